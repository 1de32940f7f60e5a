//! The `x-ratelimit-*` headers OpenAI sends, written from a quota decision's snapshot.

use std::fmt::Write;

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use crate::quota::Snapshot;

/// The `x-ratelimit-*` headers, in the order of [`header_values`].
static RATE_LIMIT_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// Puts the client's limits in the upstream's response: the upstream's own figures
/// describe the provider account, the client's limits are its key's. A header the client's
/// limits fill replaces the upstream's by the insert itself; the others are removed.
pub fn replace_rate_limit_headers(
    response: &mut ResponseHeader,
    snapshot: &Snapshot,
) -> pingora::Result<()> {
    for (name, value) in RATE_LIMIT_HEADERS.iter().zip(header_values(snapshot)) {
        match value {
            Some(value) => response.insert_header(name.as_str(), value)?,
            None => {
                response.remove_header(name);
            }
        }
    }
    Ok(())
}

/// The values of [`RATE_LIMIT_HEADERS`]; `None` where the scopes set no such limit.
fn header_values(s: &Snapshot) -> [Option<HeaderValue>; 6] {
    let reset = |ms: u64| HeaderValue::try_from(format_reset(ms)).ok();
    let requests = s.requests_limit.map(|limit| {
        [
            Some(HeaderValue::from(limit)),
            Some(HeaderValue::from(s.requests_remaining)),
            reset(s.requests_reset_ms),
        ]
    });
    let tokens = s.tokens_limit.map(|limit| {
        [
            Some(HeaderValue::from(limit)),
            Some(HeaderValue::from(s.tokens_remaining)),
            reset(s.tokens_reset_ms),
        ]
    });
    let [a, b, c] = requests.unwrap_or_default();
    let [d, e, f] = tokens.unwrap_or_default();
    [a, b, c, d, e, f]
}

/// A reset time as OpenAI writes it in `x-ratelimit-reset-*`: `250ms`, `1.5s`, `6m0s`.
/// Integer arithmetic only: this runs for every governed response.
pub fn format_reset(ms: u64) -> String {
    let mut text = String::with_capacity(16);
    // Writing to a String cannot fail.
    let _ = if ms < 1000 {
        write!(text, "{ms}ms")
    } else if ms < 60_000 {
        let (seconds, millis) = (ms / 1000, ms % 1000);
        match (millis % 100, millis % 10) {
            _ if millis == 0 => write!(text, "{seconds}s"),
            (0, _) => write!(text, "{seconds}.{}s", millis / 100),
            (_, 0) => write!(text, "{seconds}.{:02}s", millis / 10),
            _ => write!(text, "{seconds}.{millis:03}s"),
        }
    } else {
        write!(text, "{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    };
    text
}

/// The `x-ratelimit-*` headers: the tightest request and token limits of the request's
/// scopes.
pub fn rate_limit_headers(s: &Snapshot) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(rpm) = s.requests_limit {
        headers.push(("x-ratelimit-limit-requests", rpm.to_string()));
        headers.push((
            "x-ratelimit-remaining-requests",
            s.requests_remaining.to_string(),
        ));
        headers.push((
            "x-ratelimit-reset-requests",
            format_reset(s.requests_reset_ms),
        ));
    }
    if let Some(tpm) = s.tokens_limit {
        headers.push(("x-ratelimit-limit-tokens", tpm.to_string()));
        headers.push((
            "x-ratelimit-remaining-tokens",
            s.tokens_remaining.to_string(),
        ));
        headers.push(("x-ratelimit-reset-tokens", format_reset(s.tokens_reset_ms)));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_limits_replace_the_upstreams() {
        let mut response = ResponseHeader::build(200, None).unwrap();
        for name in &RATE_LIMIT_HEADERS {
            response.insert_header(name.as_str(), "999").unwrap();
        }
        response.insert_header("x-other", "kept").unwrap();
        let snapshot = Snapshot {
            requests_limit: Some(60),
            requests_remaining: 59,
            requests_reset_ms: 1500,
            tokens_limit: None,
            tokens_remaining: 0,
            tokens_reset_ms: 0,
        };
        replace_rate_limit_headers(&mut response, &snapshot).unwrap();
        let get = |name: &str| {
            let values: Vec<_> = response.headers.get_all(name).iter().collect();
            values
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("x-ratelimit-limit-requests"), ["60"]);
        assert_eq!(get("x-ratelimit-remaining-requests"), ["59"]);
        assert_eq!(get("x-ratelimit-reset-requests"), ["1.5s"]);
        for gone in [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ] {
            assert!(get(gone).is_empty(), "{gone}");
        }
        assert_eq!(get("x-other"), ["kept"]);
        // The wire form has each header once, as the client's.
        let mut wire = bytes::BytesMut::new();
        response.header_to_h1_wire(&mut wire);
        let text = String::from_utf8_lossy(&wire).to_lowercase();
        assert_eq!(
            text.matches("x-ratelimit-limit-requests").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("999"), "{text}");
    }

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(1000), "1s");
        assert_eq!(format_reset(1500), "1.5s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(61_500), "1m1s");
        assert_eq!(format_reset(1005), "1.005s");
        assert_eq!(format_reset(1050), "1.05s");
        assert_eq!(format_reset(59_999), "59.999s");
        assert_eq!(format_reset(999), "999ms");
        // The same text as the float formatting it replaced, over the whole seconds range.
        for ms in 1000..60_000u64 {
            let text = format!("{:.3}", ms as f64 / 1000.0);
            let float = format!("{}s", text.trim_end_matches('0').trim_end_matches('.'));
            assert_eq!(format_reset(ms), float, "{ms}");
        }
    }

    #[test]
    fn a_repeated_upstream_header_is_replaced_whole() {
        let mut response = ResponseHeader::build(200, None).unwrap();
        response
            .insert_header("X-RateLimit-Limit-Requests", "999")
            .unwrap();
        response
            .append_header("x-ratelimit-remaining-requests", "1")
            .unwrap();
        response
            .append_header("x-ratelimit-remaining-requests", "2")
            .unwrap();
        response.insert_header("x-other", "kept").unwrap();
        let snapshot = Snapshot {
            requests_limit: Some(60),
            requests_remaining: 59,
            requests_reset_ms: 250,
            tokens_limit: Some(1000),
            tokens_remaining: 900,
            tokens_reset_ms: 6000,
        };
        replace_rate_limit_headers(&mut response, &snapshot).unwrap();
        let mut wire = bytes::BytesMut::new();
        response.header_to_h1_wire(&mut wire);
        let text = String::from_utf8_lossy(&wire).into_owned();
        for line in [
            "x-ratelimit-limit-requests: 60\r\n",
            "x-ratelimit-remaining-requests: 59\r\n",
            "x-ratelimit-reset-requests: 250ms\r\n",
            "x-ratelimit-limit-tokens: 1000\r\n",
            "x-ratelimit-remaining-tokens: 900\r\n",
            "x-ratelimit-reset-tokens: 6s\r\n",
            "x-other: kept\r\n",
        ] {
            assert_eq!(text.matches(line).count(), 1, "{line:?} in {text}");
        }
        assert_eq!(text.matches("\r\n").count(), 7, "{text}");
        // Names and values stay paired for everything that walks the case map.
        let pairs: Vec<_> = response
            .case_header_iter()
            .map(|(name, value)| (name.as_slice().to_vec(), value.clone()))
            .collect();
        assert_eq!(pairs.len(), 7);
    }
}
