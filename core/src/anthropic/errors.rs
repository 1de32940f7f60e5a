//! Anthropic's errors (`{"type":"error","error":{"type","message"}}`) in OpenAI's shape,
//! with the status an OpenAI SDK maps to the right exception. `overloaded_error` (529) is
//! a capacity refusal a client should back off from: it becomes a 429, so the SDK's
//! `RateLimitError` (and its retry with back-off) applies.

use bytes::Bytes;
use serde_json::Value;

use crate::openai::error_body;

/// OpenAI's (status, type, code) for an Anthropic error type (or, failing that, status).
fn mapping(kind: Option<&str>, status: u16) -> (u16, &'static str, Option<&'static str>) {
    match kind {
        Some("invalid_request_error") => (400, "invalid_request_error", None),
        Some("authentication_error") => (401, "invalid_request_error", Some("invalid_api_key")),
        Some("billing_error") => (402, "insufficient_quota", Some("insufficient_quota")),
        Some("permission_error") => (403, "invalid_request_error", Some("permission_denied")),
        Some("not_found_error") => (404, "invalid_request_error", Some("model_not_found")),
        Some("request_too_large") => (413, "invalid_request_error", Some("request_too_large")),
        Some("rate_limit_error") => (429, "requests", Some("rate_limit_exceeded")),
        Some("overloaded_error") => (429, "server_overloaded", Some("upstream_overloaded")),
        Some("timeout_error") => (504, "server_error", Some("upstream_timeout")),
        Some("api_error") => (500, "server_error", None),
        _ => match status {
            529 => (429, "server_overloaded", Some("upstream_overloaded")),
            400..=599 => (status, "server_error", None),
            _ => (502, "server_error", None),
        },
    }
}

/// The client's status and OpenAI error body for an Anthropic error answer.
pub fn translate(status: u16, body: &[u8]) -> (u16, Bytes) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the Anthropic upstream answered with an error");
    let (status, openai_type, code) = mapping(kind, status);
    (status, error_body(message, openai_type, code, None))
}

/// The client's status for an Anthropic error status alone (the answer's head, before its
/// body is read).
pub fn status(upstream: u16) -> u16 {
    mapping(None, upstream).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_type_maps_to_what_an_openai_sdk_expects() {
        for (status, kind, want_status, want_type) in [
            (400, "invalid_request_error", 400, "invalid_request_error"),
            (401, "authentication_error", 401, "invalid_request_error"),
            (403, "permission_error", 403, "invalid_request_error"),
            (404, "not_found_error", 404, "invalid_request_error"),
            (413, "request_too_large", 413, "invalid_request_error"),
            (429, "rate_limit_error", 429, "requests"),
            (500, "api_error", 500, "server_error"),
            (529, "overloaded_error", 429, "server_overloaded"),
        ] {
            let body =
                format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"m {kind}"}}}}"#);
            let (got, out) = translate(status, body.as_bytes());
            assert_eq!(got, want_status, "{kind}");
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["error"]["type"], want_type, "{kind}");
            assert_eq!(v["error"]["message"], format!("m {kind}"));
        }
    }

    #[test]
    fn a_body_that_is_not_anthropic_s_keeps_a_sensible_status() {
        assert_eq!(translate(529, b"<html>").0, 429);
        assert_eq!(translate(503, b"").0, 503);
        assert_eq!(status(529), 429);
        assert_eq!(status(502), 502);
    }
}
