//! The last 64 API requests, for tests that check what a gateway forwarded (`GET /_mock/requests`).
//! Capture is cheap: header values are refcounted clones of hyper's buffers, rendered only on read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use axum::http::{HeaderName, HeaderValue, Method, Uri, request::Parts};
use serde::{Deserialize, Serialize};

pub const CAPACITY: usize = 64;

/// Headers always captured; every `x-*` header is captured too.
const CAPTURED: [&str; 7] = [
    "authorization",
    "api-key",
    "x-api-key",
    "host",
    "content-type",
    "content-length",
    "x-request-id",
];

/// One request as `GET /_mock/requests` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// Lower-case header name → value (repeated headers joined with ", ").
    pub headers: BTreeMap<String, String>,
    /// The body's `model`, verbatim (directive suffix included); null when absent or unparsable.
    pub model: Option<String>,
    /// The body's `stream`; null when the body had none or was unparsable.
    pub stream: Option<bool>,
}

struct Entry {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    model: Option<String>,
    stream: Option<bool>,
}

/// Ring buffer of recent requests. On by default; benchmarks can switch it off.
pub struct RequestLog {
    enabled: AtomicBool,
    entries: Mutex<VecDeque<Entry>>,
}

impl RequestLog {
    pub fn new(enabled: bool) -> Self {
        RequestLog {
            enabled: AtomicBool::new(enabled),
            entries: Mutex::new(VecDeque::with_capacity(CAPACITY)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    pub fn record(&self, parts: &Parts, model: Option<&str>, stream: Option<bool>) {
        if !self.enabled() {
            return;
        }
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with("x-") || CAPTURED.contains(&name.as_str())
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let entry = Entry {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers,
            model: model.map(str::to_owned),
            stream,
        };
        // The evicted entry is dropped after the lock is released.
        let evicted = match self.entries.lock() {
            Ok(mut q) => {
                let old = if q.len() >= CAPACITY {
                    q.pop_front()
                } else {
                    None
                };
                q.push_back(entry);
                old
            }
            Err(_) => None,
        };
        drop(evicted);
    }

    pub fn clear(&self) {
        if let Ok(mut q) = self.entries.lock() {
            q.clear();
        }
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<RecordedRequest> {
        let Ok(q) = self.entries.lock() else {
            return Vec::new();
        };
        q.iter().map(render).collect()
    }
}

fn render(e: &Entry) -> RecordedRequest {
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &e.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    RecordedRequest {
        method: e.method.to_string(),
        path: e
            .uri
            .path_and_query()
            .map_or_else(|| e.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        model: e.model.clone(),
        stream: e.stream,
    }
}
