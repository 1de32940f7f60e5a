//! State shared by every request: options, counters, the request log, id generator and the
//! pre-serialised models list. Read-only or atomic, so handlers never contend on a lock.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use bytes::Bytes;

use crate::MockOptions;
use crate::errors::ApiError;
use crate::ids::Ids;
use crate::models;
use crate::request_log::RequestLog;
use crate::stats::MockStats;

pub(crate) struct App {
    pub api_key: Option<String>,
    pub default_tokens: u32,
    pub stats: Arc<MockStats>,
    pub log: RequestLog,
    pub ids: Ids,
    pub models_list: Bytes,
}

impl App {
    pub fn new(opts: MockOptions) -> Self {
        App {
            api_key: opts.api_key,
            default_tokens: opts.default_completion_tokens,
            stats: Arc::new(MockStats::default()),
            log: RequestLog::new(true),
            ids: Ids::new(),
            models_list: models::list_body(),
        }
    }

    /// OpenAI paths take `Authorization: Bearer <key>` or `api-key: <key>`; Azure paths only
    /// `api-key`, as Azure does, so a gateway that forgets to translate auth is caught.
    pub fn authorize(&self, headers: &HeaderMap, azure: bool) -> Result<(), ApiError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let api_key = headers.get("api-key");
        if api_key.is_some_and(|v| v.as_bytes() == key.as_bytes()) {
            return Ok(());
        }
        if azure {
            return Err(ApiError::azure_unauthorized());
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(strip_bearer);
        if bearer == Some(key.as_str()) {
            return Ok(());
        }
        let provided = bearer.or_else(|| api_key.and_then(|v| v.to_str().ok()));
        Err(ApiError::unauthorized(provided))
    }
}

fn strip_bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
