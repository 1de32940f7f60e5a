//! The `x-ratelimit-*` headers OpenAI sends, written from a quota decision's snapshot.

use pingora::http::ResponseHeader;

use crate::quota::Snapshot;

const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Puts the client's limits in the upstream's response: the upstream's own figures
/// describe the provider account, the client's limits are its key's.
pub fn replace_rate_limit_headers(
    response: &mut ResponseHeader,
    snapshot: &Snapshot,
) -> pingora::Result<()> {
    for name in RATE_LIMIT_HEADERS {
        response.remove_header(name);
    }
    for (name, value) in rate_limit_headers(snapshot) {
        response.insert_header(name, value)?;
    }
    Ok(())
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
    fn resets_read_like_openai() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(1000), "1s");
        assert_eq!(format_reset(1500), "1.5s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(61_500), "1m1s");
    }
}
