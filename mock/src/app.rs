//! State shared by every request: options, counters, the request log, id generator and the
//! pre-serialised models list. Read-only or atomic, so handlers never contend on a lock (the
//! directive sequences excepted: a short lock, taken only by requests that name one).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::http::{HeaderMap, header};
use bytes::Bytes;

use crate::MockOptions;
use crate::behavior::Behavior;
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
    /// Requests seen per directive sequence (`first=N,seq=name`).
    pub sequences: Mutex<HashMap<String, u32>>,
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
            sequences: Mutex::new(HashMap::new()),
        }
    }

    /// Counts this request in its sequence; past the sequence's `first` requests, the
    /// failure directives no longer apply. `list` names the sequence when `seq` does not.
    pub fn sequence(&self, behavior: &mut Behavior, list: &str) {
        let Some(first) = behavior.first else {
            return;
        };
        let name = behavior.seq.clone().unwrap_or_else(|| list.to_owned());
        let seen = {
            let mut seen = self.sequences.lock().unwrap_or_else(|e| e.into_inner());
            let n = seen.entry(name).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if seen > first {
            behavior.recovered();
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
