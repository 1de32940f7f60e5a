//! Per-request behaviour directives, from the `x-mock` header and/or a `model@k=v,flag` suffix.
//! Parsed once per request into a small plain struct; unknown directives are a 400.

use std::time::Duration;

use axum::http::HeaderValue;

/// What one request asked the mock to do. `Default` is "answer normally".
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Delay before the response headers.
    pub latency: Duration,
    /// Delay before the first token chunk of a stream.
    pub ttft: Duration,
    /// Delay between token chunks of a stream.
    pub itl: Duration,
    /// Completion tokens, instead of the server default.
    pub tokens: Option<u32>,
    /// Answer with this error status (400..=599) and an OpenAI-shaped body.
    pub status: Option<u16>,
    /// `retry-after` seconds for injected errors (429 defaults to 1).
    pub retry_after: Option<u32>,
    /// Never answer; the request ends when the client goes away.
    pub hang: bool,
    /// Close the connection without any response.
    pub reset: bool,
    /// Streams: abort the connection after this many token chunks. Non-stream: like `reset`.
    pub reset_after: Option<u32>,
    /// Streams: after this many token chunks send nothing more, until the client leaves (a
    /// model stuck mid-answer; lets a test abort after a known number of tokens).
    /// Non-stream: like `hang`.
    pub stall_after: Option<u32>,
    /// Normal body, but this content-type.
    pub content_type: Option<HeaderValue>,
    /// 502 with an HTML body, as a misbehaving load balancer sends.
    pub html: bool,
    /// 200 whose body is the request body, byte for byte (checks what a proxy forwarded).
    pub echo: bool,
    /// The failure directives apply only to the first this-many requests of the sequence
    /// (`seq`); later ones answer normally ("503 twice, then 200").
    pub first: Option<u32>,
    /// Names the sequence `first` counts in (default: the whole directive list).
    pub seq: Option<String>,
}

/// Upper bounds keep a typo from tying up the server for hours or allocating gigabytes.
const MAX_DELAY: Duration = Duration::from_secs(3600);
const MAX_TOKENS: u32 = 1_000_000;

/// Splits `gpt-4o-mini@status=429` into the model to echo and the directive list.
pub fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.split_once('@') {
        Some((name, directives)) => (name, Some(directives)),
        None => (model, None),
    }
}

impl Behavior {
    /// Drops the failure directives (errors, hangs, resets), keeping delays and shape:
    /// what a request past its sequence's `first` gets.
    pub fn recovered(&mut self) {
        self.status = None;
        self.retry_after = None;
        self.hang = false;
        self.reset = false;
        self.reset_after = None;
        self.stall_after = None;
        self.html = false;
    }

    /// Completion length and whether the client's limit cut it (finish_reason "length"):
    /// the client's max if below the target, else `tokens=` or the server default.
    pub fn completion_len(&self, default: u32, client_max: Option<u32>) -> (u32, bool) {
        let target = self.tokens.unwrap_or(default);
        match client_max {
            Some(max) if max < target => (max, true),
            _ => (target, false),
        }
    }

    /// Applies a comma-separated directive list; later values win. The error names the directive.
    pub fn apply(&mut self, list: &str) -> Result<(), String> {
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            self.apply_one(key, value)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        let need =
            || value.ok_or_else(|| format!("mock directive `{key}` needs a value (`{key}=…`)"));
        match key {
            "latency" => self.latency = duration(key, need()?)?,
            "ttft" => self.ttft = duration(key, need()?)?,
            "itl" => self.itl = duration(key, need()?)?,
            "tokens" => self.tokens = Some(number(key, need()?, MAX_TOKENS)?),
            "status" => {
                let code = number(key, need()?, 599)?;
                if code < 400 {
                    return Err(format!(
                        "mock directive `status` must be 400..=599, got {code}"
                    ));
                }
                self.status = Some(code as u16);
            }
            "retry_after" => self.retry_after = Some(number(key, need()?, 86_400)?),
            "first" => self.first = Some(number(key, need()?, u32::MAX)?),
            "seq" => self.seq = Some(need()?.to_owned()),
            "reset_after" => self.reset_after = Some(number(key, need()?, MAX_TOKENS)?),
            "stall_after" => self.stall_after = Some(number(key, need()?, MAX_TOKENS)?),
            "content_type" => {
                let v = HeaderValue::from_str(need()?).map_err(|_| {
                    "mock directive `content_type` is not a valid header value".to_owned()
                })?;
                self.content_type = Some(v);
            }
            "hang" | "reset" | "html" | "echo" if value.is_some() => {
                return Err(format!(
                    "mock directive `{key}` is a flag and takes no value"
                ));
            }
            "hang" => self.hang = true,
            "reset" => self.reset = true,
            "html" => self.html = true,
            "echo" => self.echo = true,
            _ => {
                return Err(format!(
                    "unknown mock directive `{key}`; known: latency, ttft, itl, tokens, status, \
                     retry_after, hang, reset, reset_after, stall_after, content_type, html, echo, \
                     first, seq"
                ));
            }
        }
        Ok(())
    }
}

fn number(key: &str, value: &str, max: u32) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "mock directive `{key}` wants a whole number up to {max}, got `{value}`"
        )),
    }
}

/// `250ms`, `2s`, `1.5s`, `1m`, or a bare number of milliseconds.
fn duration(key: &str, value: &str) -> Result<Duration, String> {
    let bad = || format!("mock directive `{key}` wants a duration like 250ms or 2s, got `{value}`");
    let (num, scale_ms) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (value, 1.0)
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let d = Duration::from_secs_f64(n * scale_ms / 1_000.0);
    if d > MAX_DELAY {
        return Err(format!(
            "mock directive `{key}` is capped at 1h, got `{value}`"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives() {
        let mut b = Behavior::default();
        b.apply(
            "latency=250ms, ttft=1s,itl=5,tokens=7,status=429,retry_after=3,hang,reset_after=2,stall_after=4",
        )
        .unwrap();
        assert_eq!(b.latency, Duration::from_millis(250));
        assert_eq!(b.ttft, Duration::from_secs(1));
        assert_eq!(b.itl, Duration::from_millis(5));
        assert_eq!(
            (b.tokens, b.status, b.retry_after, b.reset_after),
            (Some(7), Some(429), Some(3), Some(2))
        );
        assert!(b.hang && !b.reset && !b.html);
        assert_eq!(b.stall_after, Some(4));
        b.apply("content_type=text/plain,html,reset,latency=1.5s,echo")
            .unwrap();
        assert_eq!(
            b.content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        assert!(b.html && b.reset && b.echo);
        assert_eq!(b.latency, Duration::from_millis(1500));
    }

    #[test]
    fn sequences_recover() {
        let mut b = Behavior::default();
        b.apply("status=503,retry_after=2,first=2,seq=a,latency=5ms")
            .unwrap();
        assert_eq!((b.first, b.seq.as_deref()), (Some(2), Some("a")));
        b.recovered();
        assert_eq!((b.status, b.retry_after), (None, None));
        assert_eq!(b.latency, Duration::from_millis(5));
        assert!(Behavior::default().apply("first").is_err());
        assert!(Behavior::default().apply("first=x").is_err());
    }

    #[test]
    fn rejects_bad_directives() {
        let err = Behavior::default().apply("tokens=3,bogus=1").unwrap_err();
        assert!(err.contains("`bogus`"), "{err}");
        assert!(Behavior::default().apply("status=200").is_err());
        assert!(Behavior::default().apply("latency=fast").is_err());
        assert!(Behavior::default().apply("latency=2h").is_err());
        assert!(Behavior::default().apply("hang=1").is_err());
        assert!(Behavior::default().apply("tokens").is_err());
    }

    #[test]
    fn splits_model_suffix() {
        assert_eq!(
            split_model("gpt-4o@status=500"),
            ("gpt-4o", Some("status=500"))
        );
        assert_eq!(split_model("gpt-4o"), ("gpt-4o", None));
    }
}
