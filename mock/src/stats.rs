//! Counters behind `GET /_mock/stats`: plain relaxed atomics, so counting never takes a lock
//! on the request path. A snapshot is not atomic across fields, which tests never need.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// The API endpoint a request was routed to (Azure paths count under the same endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    /// Unknown paths and wrong methods.
    Other,
    /// Anthropic's `/v1/messages` and `/v1/messages/count_tokens`.
    Messages,
}

/// Live counters. Shared as `Arc<MockStats>`; read with [`MockStats::snapshot`].
#[derive(Default)]
pub struct MockStats {
    requests_total: AtomicU64,
    by_endpoint: [AtomicU64; 7],
    azure_requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cache_read_tokens: AtomicU64,
    cache_creation_tokens: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_aborted: AtomicU64,
    injected_status: InjectedStatus,
    injected_hang: AtomicU64,
    injected_reset: AtomicU64,
    injected_reset_after: AtomicU64,
    injected_html: AtomicU64,
    rejected_unauthorized: AtomicU64,
    rejected_bad_request: AtomicU64,
    rejected_not_found: AtomicU64,
    rejected_method_not_allowed: AtomicU64,
}

/// One counter per status 400..=599, so injected errors are counted without a map or lock.
struct InjectedStatus([AtomicU64; 200]);

impl Default for InjectedStatus {
    fn default() -> Self {
        InjectedStatus(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Why an API request was refused before any directive ran.
#[derive(Clone, Copy, Debug)]
pub enum Rejection {
    Unauthorized,
    BadRequest,
    NotFound,
    MethodNotAllowed,
}

/// Injected failures other than `status=`.
#[derive(Clone, Copy, Debug)]
pub enum Injected {
    Hang,
    Reset,
    ResetAfter,
    Html,
}

impl MockStats {
    pub(crate) fn request(&self, endpoint: Endpoint, azure: bool) {
        self.requests_total.fetch_add(1, Relaxed);
        self.by_endpoint[endpoint as usize].fetch_add(1, Relaxed);
        if azure {
            self.azure_requests.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn prompt_tokens(&self, n: u32) {
        self.prompt_tokens.fetch_add(u64::from(n), Relaxed);
    }

    pub(crate) fn completion_tokens(&self, n: u32) {
        self.completion_tokens.fetch_add(u64::from(n), Relaxed);
    }

    /// Prompt tokens of `/v1/messages` answered from (`read`) or written to Anthropic's
    /// prompt cache; both are part of the prompt tokens too.
    pub(crate) fn cache_tokens(&self, read: u32, written: u32) {
        self.cache_read_tokens.fetch_add(u64::from(read), Relaxed);
        self.cache_creation_tokens
            .fetch_add(u64::from(written), Relaxed);
    }

    pub(crate) fn stream_started(&self) {
        self.streams_started.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_completed(&self) {
        self.streams_completed.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_aborted(&self) {
        self.streams_aborted.fetch_add(1, Relaxed);
    }

    pub(crate) fn injected_status(&self, status: u16) {
        if let Some(c) = status
            .checked_sub(400)
            .and_then(|i| self.injected_status.0.get(usize::from(i)))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn injected(&self, kind: Injected) {
        let c = match kind {
            Injected::Hang => &self.injected_hang,
            Injected::Reset => &self.injected_reset,
            Injected::ResetAfter => &self.injected_reset_after,
            Injected::Html => &self.injected_html,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self, why: Rejection) {
        let c = match why {
            Rejection::Unauthorized => &self.rejected_unauthorized,
            Rejection::BadRequest => &self.rejected_bad_request,
            Rejection::NotFound => &self.rejected_not_found,
            Rejection::MethodNotAllowed => &self.rejected_method_not_allowed,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Zeroes every counter (`POST /_mock/reset`).
    pub fn reset(&self) {
        let all = [
            &self.requests_total,
            &self.azure_requests,
            &self.prompt_tokens,
            &self.completion_tokens,
            &self.cache_read_tokens,
            &self.cache_creation_tokens,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_aborted,
            &self.injected_hang,
            &self.injected_reset,
            &self.injected_reset_after,
            &self.injected_html,
            &self.rejected_unauthorized,
            &self.rejected_bad_request,
            &self.rejected_not_found,
            &self.rejected_method_not_allowed,
        ];
        for c in all
            .into_iter()
            .chain(&self.by_endpoint)
            .chain(&self.injected_status.0)
        {
            c.store(0, Relaxed);
        }
    }

    pub fn snapshot(&self) -> MockStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let e = |ep: Endpoint| get(&self.by_endpoint[ep as usize]);
        let status = (400u16..)
            .zip(&self.injected_status.0)
            .filter_map(|(code, c)| Some((code, get(c))).filter(|(_, n)| *n > 0))
            .collect();
        MockStatsSnapshot {
            requests_total: get(&self.requests_total),
            requests: EndpointCounts {
                chat_completions: e(Endpoint::ChatCompletions),
                completions: e(Endpoint::Completions),
                embeddings: e(Endpoint::Embeddings),
                responses: e(Endpoint::Responses),
                models: e(Endpoint::Models),
                other: e(Endpoint::Other),
                messages: e(Endpoint::Messages),
            },
            azure_requests: get(&self.azure_requests),
            prompt_tokens: get(&self.prompt_tokens),
            completion_tokens: get(&self.completion_tokens),
            cache_read_tokens: get(&self.cache_read_tokens),
            cache_creation_tokens: get(&self.cache_creation_tokens),
            streams: StreamCounts {
                started: get(&self.streams_started),
                completed: get(&self.streams_completed),
                aborted: get(&self.streams_aborted),
            },
            errors_injected: InjectedCounts {
                status,
                hang: get(&self.injected_hang),
                reset: get(&self.injected_reset),
                reset_after: get(&self.injected_reset_after),
                html: get(&self.injected_html),
            },
            rejected: RejectedCounts {
                unauthorized: get(&self.rejected_unauthorized),
                bad_request: get(&self.rejected_bad_request),
                not_found: get(&self.rejected_not_found),
                method_not_allowed: get(&self.rejected_method_not_allowed),
            },
        }
    }
}

/// The JSON of `GET /_mock/stats`. Control endpoints (`/_mock/*`) are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStatsSnapshot {
    /// Every request to an API path, including refused ones and unknown paths.
    pub requests_total: u64,
    pub requests: EndpointCounts,
    /// Requests that came in on `/openai/deployments/…` (also counted under `requests`).
    pub azure_requests: u64,
    /// Prompt tokens of answered requests (at stream start for streams).
    pub prompt_tokens: u64,
    /// Completion tokens handed to the connection; an aborted stream counts only what was sent.
    pub completion_tokens: u64,
    /// Of the prompt tokens, those `/v1/messages` reported as read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Of the prompt tokens, those `/v1/messages` reported as written to the prompt cache.
    #[serde(default)]
    pub cache_creation_tokens: u64,
    pub streams: StreamCounts,
    pub errors_injected: InjectedCounts,
    pub rejected: RejectedCounts,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounts {
    pub chat_completions: u64,
    pub completions: u64,
    pub embeddings: u64,
    pub responses: u64,
    pub models: u64,
    pub other: u64,
    /// Anthropic's `/v1/messages` and `/v1/messages/count_tokens`.
    #[serde(default)]
    pub messages: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    pub started: u64,
    /// The final event was handed to the connection.
    pub completed: u64,
    /// Ended early: the client went away or `reset_after` cut it.
    pub aborted: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedCounts {
    /// `status=` errors by HTTP status; only statuses seen appear (JSON keys are strings).
    pub status: BTreeMap<u16, u64>,
    pub hang: u64,
    pub reset: u64,
    pub reset_after: u64,
    pub html: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCounts {
    pub unauthorized: u64,
    pub bad_request: u64,
    pub not_found: u64,
    pub method_not_allowed: u64,
}
