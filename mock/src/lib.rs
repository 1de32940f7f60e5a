//! tollgate-mock: an OpenAI-compatible upstream with deterministic content and per-request
//! failure directives, for gateway tests, the offline demo, and load benchmarks.
//!
//! - Endpoints: `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//!   `/v1/responses`; `GET /v1/models[/{id}]`; Azure `POST /openai/deployments/{d}/…`
//!   (needs `?api-version=`); controls `GET /_mock/stats`, `POST /_mock/reset`,
//!   `GET /_mock/requests`, `GET /_mock/health`; Anthropic's `POST /v1/messages` and
//!   `/v1/messages/count_tokens` (`x-api-key`, `anthropic-version`; see `messages.rs`).
//! - Content: one vocabulary word per token, seeded by (model, prompt). Prompt tokens are
//!   counted with the o200k tokenizer as OpenAI does: chat and Responses add 3 per message
//!   (role, content, name + 1) and 3 per prompt; legacy completions and embeddings count the
//!   text (or token ids) alone.
//! - Directives (header `x-mock` and/or a `model@…` suffix, comma-separated, suffix wins):
//!   `latency=`, `ttft=`, `itl=`, `tokens=`, `status=`, `retry_after=`, `hang`, `reset`,
//!   `reset_after=`, `stall_after=`, `content_type=`, `html`, `echo`, and `first=N` (with
//!   `seq=name`): the failure directives hold for the first N requests of that sequence
//!   only, then it answers normally ("503 twice, then 200"). See `behavior.rs`.
//! - The request log (last 64) is on by default so tests need no setup; benchmarks switch it
//!   off with `--no-record` / [`MockServer::set_recording`].

mod app;
mod behavior;
mod chat;
mod completions;
mod dispatch;
mod embeddings;
mod errors;
mod ids;
mod messages;
mod models;
mod pipeline;
mod prompt;
mod reply;
mod request_log;
mod responses;
mod routes;
mod server;
mod sse;
mod stats;
mod text;
mod usage;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;

pub use request_log::RecordedRequest;
pub use server::{MockServer, serve};
pub use stats::{
    EndpointCounts, InjectedCounts, MockStats, MockStatsSnapshot, RejectedCounts, StreamCounts,
};

/// How the mock behaves for every request.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// If set, API requests must carry `Authorization: Bearer <key>` or `api-key: <key>`
    /// (Azure paths: `api-key` only), else 401 `invalid_api_key`.
    pub api_key: Option<String>,
    /// Completion tokens when neither the request's max nor a `tokens=` directive says less.
    pub default_completion_tokens: u32,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            api_key: None,
            default_completion_tokens: 16,
        }
    }
}

/// The mock as an axum `Router`, to mount in another server, plus its live counters.
/// Served this way, `reset` cannot drop the socket before the response head (it fails the
/// body instead); [`MockServer`] and [`serve`] do it properly.
pub fn router(opts: MockOptions) -> (axum::Router, Arc<MockStats>) {
    let app = Arc::new(app::App::new(opts));
    let stats = app.stats.clone();
    let router = axum::Router::new().fallback(move |req: Request<Body>| {
        let app = app.clone();
        async move { dispatch::handle(&app, req, None).await }
    });
    (router, stats)
}
