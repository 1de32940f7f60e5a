//! The `x-ratelimit-*` headers OpenAI sends, written from a quota decision's snapshot.

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
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let text = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
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
    }
}
