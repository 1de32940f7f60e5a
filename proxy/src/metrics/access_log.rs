//! The access-log line of a finished request. In JSON format the line is written straight
//! into the log buffer: the same object the JSON log formatter would make (timestamp, level,
//! the fields, target), without its per-field dispatch, and into a buffer each thread
//! reuses, so a request allocates nothing for its line. That formatter cost more than a
//! quarter of the gateway's own instructions per request. Pretty logs (a terminal) go
//! through `tracing` as before.

use std::{
    cell::RefCell,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    log_writer::LogWriter,
    rfc3339::{self, Fraction},
};

/// Where JSON access lines go; unset when the log is pretty (or in tests), and then the
/// line is a `tracing` event.
static JSON_OUTPUT: OnceLock<LogWriter> = OnceLock::new();

/// Writes access lines as JSON into `writer` from now on (once, at start-up).
pub fn write_json_to(writer: LogWriter) {
    let _ = JSON_OUTPUT.set(writer);
}

/// What an access line says; `None` fields are left out, as `tracing` leaves them out.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub key: Option<&'a str>,
    pub user: Option<i64>,
    pub team: Option<i64>,
    pub model: &'a str,
    pub provider: &'a str,
    pub deployment: Option<&'a str>,
    pub stream: bool,
    pub attempts: u32,
    pub latency_ms: f64,
    pub overhead_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cost_micro_usd: Option<i64>,
    pub error: Option<&'a str>,
    pub refusal: Option<String>,
    /// The response cache's outcome (`hit`, `miss`, `bypass`) for a cached model.
    pub cache: Option<&'static str>,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl AccessLine<'_> {
    /// Writes the line as JSON if the log is JSON; `false`: the caller logs it by `tracing`.
    pub fn write_json(&self) -> bool {
        let Some(output) = JSON_OUTPUT.get() else {
            return false;
        };
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return false;
            };
            line.clear();
            self.encode(&mut line, SystemTime::now());
            // The buffer's lock is taken once per line; a blocked log drops the line.
            output.append(&line);
            true
        })
    }

    fn encode(&self, out: &mut Vec<u8>, now: SystemTime) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        field(out, "request_id", self.request_id);
        field(out, "method", self.method);
        field(out, "path", self.path);
        field(out, "status", self.status);
        field(out, "key", self.key);
        field(out, "user", self.user);
        field(out, "team", self.team);
        field(out, "model", self.model);
        field(out, "provider", self.provider);
        field(out, "deployment", self.deployment);
        field(out, "stream", self.stream);
        field(out, "attempts", self.attempts);
        field(out, "latency_ms", self.latency_ms);
        field(out, "overhead_ms", self.overhead_ms);
        field(out, "ttfb_ms", self.ttfb_ms);
        field(out, "prompt_tokens", self.prompt_tokens);
        field(out, "completion_tokens", self.completion_tokens);
        field(out, "cost_micro_usd", self.cost_micro_usd);
        field(out, "error", self.error);
        field(out, "refusal", self.refusal.as_deref());
        field(out, "cache", self.cache);
        out.extend_from_slice(b",\"target\":\"tollgate::access\"}\n");
    }
}

/// `,"name":value`, or nothing for `None`.
fn field<T: Serialize>(out: &mut Vec<u8>, name: &str, value: T) {
    // `Option::None` serializes as `null`: left out instead, as `tracing` records no value.
    let start = out.len();
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    let value_at = out.len();
    if serde_json::to_writer(&mut *out, &value).is_err() || out[value_at..] == *b"null" {
        out.truncate(start);
    }
}

/// RFC 3339 in UTC with microseconds, as the JSON log formatter writes it.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Past the year 9999 the log says 9999's last second rather than nothing.
    if !rfc3339::write(out, since.as_secs(), since.subsec_nanos(), Fraction::Micros) {
        out.extend_from_slice(b"9999-12-31T23:59:59.999999Z");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            request_id: "req_1",
            method: "POST",
            path: "/v1/chat/completions",
            status: 200,
            key: Some("key_\"quoted\""),
            user: Some(7),
            team: None,
            model: "gpt-4o-mini",
            provider: "upstream",
            deployment: Some("upstream/gpt-4o-mini"),
            stream: false,
            attempts: 1,
            latency_ms: 1.25,
            overhead_ms: 0.0625,
            ttfb_ms: None,
            prompt_tokens: Some(12),
            completion_tokens: Some(16),
            cost_micro_usd: Some(11),
            error: None,
            refusal: Some("user:rate_limit_requests".into()),
            cache: Some("hit"),
        }
    }

    #[test]
    fn the_line_is_the_json_the_formatter_would_write() {
        let mut out = Vec::new();
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_796_611_141_004_321);
        line().encode(&mut out, at);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "2026-12-07T02:39:01.004321Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "tollgate::access");
        assert_eq!(v["key"], "key_\"quoted\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["user"], 7);
        assert_eq!(v["latency_ms"], 1.25);
        assert_eq!(v["refusal"], "user:rate_limit_requests");
        assert_eq!(v["cache"], "hit");
        // Absent values are left out, not null.
        let object = v.as_object().unwrap();
        for absent in ["team", "ttfb_ms", "error"] {
            assert!(!object.contains_key(absent), "{absent} in {v}");
        }
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 21, "{keys:?}");
    }
}
