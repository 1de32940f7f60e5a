//! A stored answer prepared once for serving many times: its bytes cut into segments, with
//! holes where each hit puts its fresh `id` and `created`, and the usage event marked so it
//! can be left out for clients that did not ask for it. Serving a hit then copies bytes;
//! nothing is parsed per hit.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cache::replay::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Range<usize>),
    /// A string id: written as `"` + the stored id's prefix (`chatcmpl-`) + the fresh suffix + `"`.
    Id(Range<usize>),
    /// A Unix time: the hit's.
    Created,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    piece: Piece,
    /// Part of a usage-only event, served only to clients that asked for usage.
    usage: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: Bytes,
    segments: Vec<Segment>,
    /// Bytes of the fixed text, for the answer's capacity.
    len: usize,
}

/// The top-level fields a hit rewrites, borrowed from the stored text.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    created: Option<&'a RawValue>,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

/// Where `part` (a slice of `whole`) starts in it.
fn offset(whole: &[u8], part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

struct Builder<'a> {
    text: &'a [u8],
    segments: Vec<Segment>,
    /// Where the text not yet in a segment starts.
    done: usize,
}

impl Builder<'_> {
    fn text_to(&mut self, end: usize, usage: bool) {
        if end > self.done {
            self.segments.push(Segment {
                piece: Piece::Text(self.done..end),
                usage,
            });
            self.done = end;
        }
    }

    fn hole(&mut self, range: Range<usize>, piece: Piece, usage: bool) {
        self.text_to(range.start, usage);
        self.segments.push(Segment { piece, usage });
        self.done = range.end;
    }

    /// The holes of one JSON object starting at `base` in the text.
    fn object(&mut self, json: &[u8], base: usize, usage: bool) -> Option<()> {
        let top: Top<'_> = serde_json::from_slice(json).ok()?;
        let mut holes: Vec<(Range<usize>, Piece)> = Vec::with_capacity(2);
        if let Some(id) = top.id.map(RawValue::get)
            && id.starts_with('"')
            && !id.contains('\\')
        {
            let at = base + offset(json, id)?;
            holes.push((at..at + id.len(), Piece::Id(0..0)));
        }
        for created in [top.created, top.created_at].into_iter().flatten() {
            let raw = created.get();
            if raw.bytes().all(|b| b.is_ascii_digit()) {
                let at = base + offset(json, raw)?;
                holes.push((at..at + raw.len(), Piece::Created));
            }
        }
        holes.sort_by_key(|(r, _)| r.start);
        for (range, piece) in holes {
            let piece = match piece {
                // The stored id's prefix, without its quote: up to its last `-` or `_`.
                Piece::Id(_) => {
                    let inner = range.start + 1..range.end - 1;
                    let value = self.text.get(inner.clone())?;
                    let cut = value.iter().rposition(|b| *b == b'-' || *b == b'_');
                    Piece::Id(inner.start..inner.start + cut.map_or(0, |c| c + 1))
                }
                other => other,
            };
            self.hole(range, piece, usage);
        }
        Some(())
    }

    fn finish(mut self, text: Bytes) -> Template {
        self.text_to(self.text.len(), false);
        let len = self
            .segments
            .iter()
            .map(|s| match &s.piece {
                Piece::Text(r) | Piece::Id(r) => r.len(),
                Piece::Created => 0,
            })
            .sum();
        Template {
            text,
            segments: self.segments,
            len,
        }
    }
}

impl Template {
    /// A stored JSON answer: its top-level `id` and `created` (`created_at`) are holes.
    pub fn of_json(body: &Bytes) -> Template {
        let mut builder = Builder {
            text: body,
            segments: Vec::new(),
            done: 0,
        };
        // Not an object with those fields (an embedding list): served as stored.
        let _ = builder.object(body, 0, false);
        builder.finish(body.clone())
    }

    /// A stored stream: each chunk's `id` and `created` are holes, and the usage-only event
    /// is marked (made from `usage` before `[DONE]` if the stored stream has none, because
    /// its client had not asked for it).
    pub fn of_stream(body: &[u8], model: &str, usage: (u64, u64)) -> Template {
        let mut text = body.to_vec();
        if !has_usage_event(body) {
            insert_usage_event(&mut text, model, usage);
        }
        let text = Bytes::from(text);
        let mut builder = Builder {
            text: &text,
            segments: Vec::new(),
            done: 0,
        };
        let mut at = 0;
        while at < text.len() {
            let end = find(&text[at..], b"\n\n").map_or(text.len(), |e| at + e + 2);
            let event = &text[at..end];
            if let Some(start) = find(event, b"data:") {
                let data = text[at + start + 5..end].trim_ascii();
                let data_at = data.as_ptr() as usize - text.as_ptr() as usize;
                if data.first() == Some(&b'{') {
                    let usage_only = is_usage_only(data);
                    builder.text_to(at, false);
                    let _ = builder.object(data, data_at, usage_only);
                    builder.text_to(end, usage_only);
                }
            }
            at = end;
        }
        builder.finish(text.clone())
    }

    /// The answer with a hit's fresh identity, with or without the usage event.
    pub fn render(&self, identity: &Identity, include_usage: bool) -> Bytes {
        let created = identity.created.to_string();
        let mut out = Vec::with_capacity(self.len + 64);
        for segment in &self.segments {
            if segment.usage && !include_usage {
                continue;
            }
            match &segment.piece {
                Piece::Text(r) => out.extend_from_slice(&self.text[r.clone()]),
                Piece::Id(prefix) => {
                    out.push(b'"');
                    out.extend_from_slice(&self.text[prefix.clone()]);
                    out.extend_from_slice(identity.suffix.as_bytes());
                    out.push(b'"');
                }
                Piece::Created => out.extend_from_slice(created.as_bytes()),
            }
        }
        Bytes::from(out)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// A chunk with no choices and a usage object: the usage-only event.
fn is_usage_only(data: &[u8]) -> bool {
    serde_json::from_slice::<Top<'_>>(data).is_ok_and(|top| {
        top.choices.is_some_and(|c| c.get().trim() == "[]")
            && top.usage.is_some_and(|u| u.get().trim() != "null")
    })
}

fn has_usage_event(body: &[u8]) -> bool {
    body.split(|b| *b == b'\n').any(|line| {
        line.strip_prefix(b"data:")
            .map(<[u8]>::trim_ascii)
            .is_some_and(|data| data.first() == Some(&b'{') && is_usage_only(data))
    })
}

/// Adds a usage-only event before `[DONE]`, with the id, created and model of the last
/// chunk (so it gets the same holes).
fn insert_usage_event(text: &mut Vec<u8>, model: &str, (prompt, completion): (u64, u64)) {
    let Some(done) = memchr::memmem::rfind(text, b"data: [DONE]") else {
        return;
    };
    let last = text[..done]
        .split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:").map(<[u8]>::trim_ascii))
        .rfind(|data| data.first() == Some(&b'{'))
        .and_then(|data| serde_json::from_slice::<serde_json::Value>(data).ok());
    let field = |name: &str| last.as_ref().and_then(|l| l.get(name)).cloned();
    let mut event = serde_json::Map::new();
    event.insert(
        "id".into(),
        field("id").unwrap_or_else(|| "chatcmpl-".into()),
    );
    event.insert(
        "object".into(),
        field("object").unwrap_or_else(|| "chat.completion.chunk".into()),
    );
    event.insert("created".into(), field("created").unwrap_or(0.into()));
    event.insert(
        "model".into(),
        field("model").unwrap_or_else(|| model.into()),
    );
    event.insert("choices".into(), serde_json::Value::Array(Vec::new()));
    event.insert(
        "usage".into(),
        serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }),
    );
    let mut line = b"data: ".to_vec();
    // A map of values always serializes.
    let _ = serde_json::to_writer(&mut line, &event);
    line.extend_from_slice(b"\n\n");
    text.splice(done..done, line);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn identity() -> Identity {
        Identity {
            suffix: "FRESH".into(),
            created: 1_800_000_000,
        }
    }

    #[test]
    fn a_json_answer_keeps_every_byte_but_its_identity() {
        let stored = Bytes::from(
            r#"{"id": "chatcmpl-abc123","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"call_1"}]}}],"usage":{"prompt_tokens":1}}"#,
        );
        let out = Template::of_json(&stored).render(&identity(), false);
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            String::from_utf8(stored.to_vec())
                .unwrap()
                .replace("chatcmpl-abc123", "chatcmpl-FRESH")
                .replace("1700000000", "1800000000")
        );
        // The Responses API's `created_at` and `resp_` ids.
        let response =
            Bytes::from(r#"{"id":"resp_9","object":"response","created_at":5,"output":[]}"#);
        let out: Value =
            serde_json::from_slice(&Template::of_json(&response).render(&identity(), true))
                .unwrap();
        assert_eq!(
            (out["id"].as_str(), out["created_at"].as_u64()),
            (Some("resp_FRESH"), Some(1_800_000_000))
        );
        let embedding = Bytes::from(r#"{"object":"list","data":[{"embedding":[0.5]}]}"#);
        assert_eq!(
            Template::of_json(&embedding).render(&identity(), true),
            embedding
        );
    }

    fn chunk(content: Option<&str>, usage: bool) -> String {
        let mut c = json!({"id":"chatcmpl-s1","object":"chat.completion.chunk","created":7,"model":"m","choices":[]});
        if let Some(text) = content {
            c["choices"] = json!([{"index":0,"delta":{"content":text},"finish_reason":null}]);
            c["usage"] = Value::Null;
        }
        if usage {
            c["usage"] = json!({"prompt_tokens":3,"completion_tokens":2,"total_tokens":5});
        }
        format!("data: {c}\n\n")
    }

    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_replays_each_chunk_with_the_identity_and_usage_only_when_asked() {
        let stored = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk(Some("Hel"), false),
            chunk(Some("lo"), false),
            chunk(None, true)
        );
        let template = Template::of_stream(stored.as_bytes(), "m", (3, 2));
        let with = template.render(&identity(), true);
        assert!(with.ends_with(b"data: [DONE]\n\n"));
        let all = events(&with);
        assert_eq!(all.len(), 3);
        assert!(
            all.iter()
                .all(|e| e["id"] == "chatcmpl-FRESH" && e["created"] == 1_800_000_000)
        );
        assert_eq!(all[2]["usage"]["total_tokens"], 5);
        let without = template.render(&identity(), false);
        assert_eq!(events(&without).len(), 2);
        assert!(without.ends_with(b"data: [DONE]\n\n"));
        assert_eq!(
            String::from_utf8(with.to_vec()).unwrap(),
            stored
                .replace("chatcmpl-s1", "chatcmpl-FRESH")
                .replace(":7,", ":1800000000,")
        );
    }

    #[test]
    fn a_stream_stored_without_usage_gets_it_made_from_the_counts() {
        let stored = format!("{}data: [DONE]\n\n", chunk(Some("Hi"), false));
        let template = Template::of_stream(stored.as_bytes(), "m", (4, 1));
        let with = events(&template.render(&identity(), true));
        assert_eq!(with.len(), 2);
        assert_eq!(with[1]["choices"], json!([]));
        assert_eq!(with[1]["usage"]["total_tokens"], 5);
        assert_eq!(with[1]["id"], "chatcmpl-FRESH");
        assert_eq!(events(&template.render(&identity(), false)).len(), 1);
    }
}
