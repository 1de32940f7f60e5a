//! State shared by every request: options, counters, the request log, id generator and the
//! pre-serialised models list. Read-only or atomic, so handlers never contend on a lock (the
//! directive sequences excepted: a short lock, taken only by requests that name one).

use std::{
    collections::{HashMap, HashSet},
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
    /// Prompt prefixes marked `cache_control` seen on `/v1/messages` (Anthropic's cache).
    pub prompt_cache: Mutex<HashSet<u64>>,
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
            prompt_cache: Mutex::new(HashSet::new()),
        }
    }

    /// Anthropic's prompt cache for a prefix of (hash, tokens): `(read, written)` tokens —
    /// written the first time the prefix is seen, read after.
    pub fn prompt_cache(&self, prefix: Option<(u64, u32)>) -> (u32, u32) {
        let Some((hash, tokens)) = prefix else {
            return (0, 0);
        };
        let mut seen = self.prompt_cache.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(hash) {
            (0, tokens)
        } else {
            (tokens, 0)
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
