//! Response assembly: the headers OpenAI puts on every answer (`x-request-id`,
//! `openai-processing-ms`, `x-ratelimit-*` on successes), errors, and the HTML 502.

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::errors::{ApiError, HTML_502};
use crate::ids::Ids;
use crate::server::ConnAbort;

pub type Reply = Response<Body>;

/// Per-request facts every reply needs.
pub struct Ctx {
    pub start: Instant,
    pub request_id: HeaderValue,
    /// Present when served by our own accept loop, which can drop the socket (`reset`).
    pub conn: Option<ConnAbort>,
}

impl Ctx {
    /// Echoes the caller's `x-request-id`, or makes one.
    pub fn new(headers: &HeaderMap, ids: &Ids, conn: Option<ConnAbort>) -> Self {
        let request_id = headers
            .get(X_REQUEST_ID)
            .cloned()
            .or_else(|| HeaderValue::from_str(&ids.make("req_")).ok())
            .unwrap_or(HeaderValue::from_static("req_mock"));
        Ctx {
            start: Instant::now(),
            request_id,
            conn,
        }
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
const OPENAI_VERSION: HeaderName = HeaderName::from_static("openai-version");
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

pub const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream; charset=utf-8");

fn base(ctx: &Ctx, status: StatusCode, content_type: HeaderValue, body: Body) -> Reply {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    // Sized for the ~12 headers a success carries, so inserting never regrows the map.
    *resp.headers_mut() = HeaderMap::with_capacity(16);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(X_REQUEST_ID, ctx.request_id.clone());
    h.insert(
        PROCESSING_MS,
        HeaderValue::from(ctx.start.elapsed().as_millis() as u64),
    );
    h.insert(OPENAI_VERSION, HeaderValue::from_static("2020-10-01"));
    resp
}

/// A 200 with OpenAI's rate-limit headers. `content_type` overrides the natural one
/// (`content_type=` directive).
pub fn ok(
    ctx: &Ctx,
    natural: HeaderValue,
    content_type: Option<&HeaderValue>,
    body: Body,
) -> Reply {
    let streaming = natural == EVENT_STREAM;
    let mut resp = base(
        ctx,
        StatusCode::OK,
        content_type.cloned().unwrap_or(natural),
        body,
    );
    let h = resp.headers_mut();
    h.insert(LIMIT_REQUESTS, HeaderValue::from_static("30000"));
    h.insert(LIMIT_TOKENS, HeaderValue::from_static("150000000"));
    h.insert(REMAINING_REQUESTS, HeaderValue::from_static("29999"));
    h.insert(REMAINING_TOKENS, HeaderValue::from_static("149999000"));
    h.insert(RESET_REQUESTS, HeaderValue::from_static("2ms"));
    h.insert(RESET_TOKENS, HeaderValue::from_static("0s"));
    if streaming {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

pub fn json_ok(ctx: &Ctx, content_type: Option<&HeaderValue>, body: impl Into<Body>) -> Reply {
    ok(ctx, JSON, content_type, body.into())
}

pub fn error(ctx: &Ctx, e: &ApiError) -> Reply {
    let mut resp = base(ctx, e.status, JSON, Body::from(e.body()));
    let h = resp.headers_mut();
    if let Some(secs) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        h.insert(LIMIT_REQUESTS, HeaderValue::from_static("30000"));
        h.insert(REMAINING_REQUESTS, HeaderValue::from_static("0"));
        let reset = format!("{}s", e.retry_after.unwrap_or(1));
        if let Ok(v) = HeaderValue::from_str(&reset) {
            h.insert(RESET_REQUESTS, v);
        }
    }
    resp
}

pub fn html_502(ctx: &Ctx) -> Reply {
    let mut resp = base(
        ctx,
        StatusCode::BAD_GATEWAY,
        HeaderValue::from_static("text/html"),
        Body::from(HTML_502),
    );
    // A load balancer's page carries no OpenAI headers.
    resp.headers_mut().remove(PROCESSING_MS);
    resp.headers_mut().remove(OPENAI_VERSION);
    resp
}

/// Serialises a response body into a buffer sized up front (`size_hint` ≈ the expected length),
/// so a typical body is written without regrowing.
pub fn to_json<T: Serialize>(value: &T, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint);
    if serde_json::to_writer(&mut out, value).is_err() {
        out.clear();
    }
    out
}

/// `/_mock/*` answers: plain JSON, no OpenAI headers.
pub fn control(status: StatusCode, body: impl Into<Body>) -> Reply {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, JSON);
    resp
}
