//! Reads only what routing needs from a request body (`model`, `stream`, token limits)
//! and swaps the model name in place, leaving every other byte as the client sent it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

/// What the gateway needs to know about a JSON request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestProbe {
    pub model: Option<String>,
    /// Byte range of the `model` value (quotes included) in the body.
    pub model_span: Option<Range<usize>>,
    pub stream: bool,
    /// The largest of `max_tokens`, `max_completion_tokens` and `max_output_tokens`.
    pub max_tokens: Option<u64>,
    /// How many completions the upstream generates: the larger of `n` and `best_of`, at
    /// least 1.
    pub choices: u64,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: Option<bool>,
    /// Whether the body has a `stream_options` object at all.
    pub has_stream_options: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body must be a JSON object")]
    NotAnObject,
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("'model' must be a string")]
    ModelNotString,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    n: Option<u64>,
    best_of: Option<u64>,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Validates the body as JSON and extracts the routing fields.
pub fn probe(body: &[u8]) -> Result<RequestProbe, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(if first.is_none() {
            BodyError::InvalidJson("the body is empty".into())
        } else {
            BodyError::NotAnObject
        });
    }
    let parsed: Probe =
        serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let (model, model_span) = match parsed.model {
        None => (None, None),
        Some(raw) => {
            let text = raw.get();
            if text == "null" {
                (None, None)
            } else {
                let model: String =
                    serde_json::from_str(text).map_err(|_| BodyError::ModelNotString)?;
                // The raw value borrows from `body`, so its offset locates it exactly.
                let start = text.as_ptr() as usize - body.as_ptr() as usize;
                (Some(model), Some(start..start + text.len()))
            }
        }
    };
    Ok(RequestProbe {
        model,
        model_span,
        stream: parsed.stream.unwrap_or(false),
        // The largest: an upstream may honour any one of them.
        max_tokens: [
            parsed.max_tokens,
            parsed.max_completion_tokens,
            parsed.max_output_tokens,
        ]
        .into_iter()
        .flatten()
        .max(),
        choices: parsed.n.max(parsed.best_of).unwrap_or(1).max(1),
        has_stream_options: parsed.stream_options.is_some(),
        include_usage: parsed.stream_options.and_then(|o| o.include_usage),
    })
}

/// The body with `stream_options.include_usage` set to true, so a stream reports its usage,
/// and its probe. The usual case (no `stream_options` at all) inserts the field at the
/// start and moves the probe's spans, with no second parse of the body.
pub fn with_include_usage(
    body: &Bytes,
    probe: &RequestProbe,
) -> Result<(Bytes, RequestProbe), BodyError> {
    const INSERTED: &[u8] = br#""stream_options":{"include_usage":true},"#;
    // `"stream_options": null` is no object, but inserting another key would duplicate it.
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"stream_options\""));
    let mentioned = KEY.find(body).is_some();
    if !probe.has_stream_options && !mentioned {
        let Some(open) = body.iter().position(|b| *b == b'{') else {
            return Err(BodyError::NotAnObject);
        };
        let mut out = Vec::with_capacity(body.len() + INSERTED.len());
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(INSERTED);
        out.extend_from_slice(&body[open + 1..]);
        let moved = |span: &Range<usize>| span.start + INSERTED.len()..span.end + INSERTED.len();
        let probe = RequestProbe {
            model_span: probe.model_span.as_ref().map(moved),
            include_usage: Some(true),
            has_stream_options: true,
            ..probe.clone()
        };
        return Ok((Bytes::from(out), probe));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    match value.get_mut("stream_options") {
        Some(serde_json::Value::Object(options)) => {
            options.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        _ => {
            value["stream_options"] = serde_json::json!({ "include_usage": true });
        }
    }
    let out = serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    // Written anew: its spans are found again.
    let probe = self::probe(&out)?;
    Ok((out, probe))
}

/// The body with the `model` value replaced by `new_model`; unchanged if it has no model.
pub fn replace_model(body: &Bytes, span: &Range<usize>, new_model: &str) -> Bytes {
    let encoded = serde_json::to_string(new_model).unwrap_or_default();
    let mut out = BytesMut::with_capacity(body.len() - span.len() + encoded.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_routing_fields() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o-mini", "stream": true, "max_tokens": 7, "stream_options": {"include_usage": false}}"#;
        let p = probe(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o-mini"));
        assert!(p.stream);
        assert_eq!(p.max_tokens, Some(7));
        assert_eq!(p.include_usage, Some(false));
        let span = p.model_span.unwrap();
        assert_eq!(&body[span], br#""gpt-4o-mini""#);
    }

    #[test]
    fn rejects_bad_bodies() {
        assert_eq!(probe(b"[1,2]"), Err(BodyError::NotAnObject));
        assert!(matches!(probe(b""), Err(BodyError::InvalidJson(_))));
        assert!(matches!(
            probe(b"{\"model\": \"x\""),
            Err(BodyError::InvalidJson(_))
        ));
        assert_eq!(probe(br#"{"model": 5}"#), Err(BodyError::ModelNotString));
        assert!(matches!(
            probe(br#"{"model": "a", "stream": "yes"}"#),
            Err(BodyError::InvalidJson(_))
        ));
        assert_eq!(probe(br#"{"model": null}"#).unwrap().model, None);
    }

    #[test]
    fn replaces_only_the_model_bytes() {
        let body = Bytes::from_static(br#"{ "model":"a\u0062c",  "messages": [ ],"x":1 }"#);
        let p = probe(&body).unwrap();
        assert_eq!(p.model.as_deref(), Some("abc"));
        let out = replace_model(&body, &p.model_span.unwrap(), "up/stream \"v2\"");
        assert_eq!(
            &out[..],
            br#"{ "model":"up/stream \"v2\"",  "messages": [ ],"x":1 }"#
        );
        assert_eq!(
            probe(&out).unwrap().model.as_deref(),
            Some("up/stream \"v2\"")
        );
    }

    #[test]
    fn include_usage_is_added_without_touching_the_rest() {
        let body = Bytes::from_static(br#"{"model": "m", "stream": true, "messages": []}"#);
        let p = probe(&body).unwrap();
        let (out, moved) = with_include_usage(&body, &p).unwrap();
        assert_eq!(
            &out[..],
            br#"{"stream_options":{"include_usage":true},"model": "m", "stream": true, "messages": []}"#
        );
        // The probe handed back is the one a second parse would find.
        let again = probe(&out).unwrap();
        assert_eq!(moved, again);
        assert_eq!(again.include_usage, Some(true));
        assert_eq!(&out[moved.model_span.unwrap()], br#""m""#);

        for existing in [
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
            r#"{"model":"m","stream":true,"stream_options":{}}"#,
            r#"{"model":"m","stream":true,"stream_options":null}"#,
        ] {
            let body = Bytes::from(existing.to_string());
            let (out, moved) = with_include_usage(&body, &probe(&body).unwrap()).unwrap();
            assert_eq!(moved, probe(&out).unwrap(), "{existing}");
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true, "{existing}");
            assert_eq!(v["model"], "m");
        }
    }
}
