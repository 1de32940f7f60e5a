//! A hit's body: a stored JSON answer with a fresh `id` and `created`, a stored stream
//! replayed with the same, or a JSON answer told again as the stream the client asked for
//! (role chunk, content chunk, finish chunk, the usage chunk when asked, `[DONE]`), so
//! the SDKs assemble the same text.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::downstream::endpoints::Endpoint;

/// The fresh identity a hit's answer carries.
pub struct Identity {
    /// Random, after the stored id's own prefix (`chatcmpl-`, `cmpl-`, `resp_`).
    pub suffix: String,
    /// Unix seconds.
    pub created: u64,
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new()
    }
}

impl Identity {
    pub fn new() -> Self {
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(24)
            .collect();
        Identity {
            suffix,
            created: chrono::Utc::now().timestamp().max(0) as u64,
        }
    }

    fn id_like(&self, stored: &str) -> String {
        let cut = stored.rfind(['-', '_']).map_or(0, |at| at + 1);
        format!("{}{}", &stored[..cut], self.suffix)
    }

    fn refresh(&self, object: &mut Map<String, Value>) {
        if let Some(Value::String(id)) = object.get("id") {
            let id = self.id_like(id);
            object.insert("id".into(), Value::String(id));
        }
        for field in ["created", "created_at"] {
            if object.get(field).is_some_and(Value::is_u64) {
                object.insert(field.into(), Value::from(self.created));
            }
        }
    }
}

/// A stored JSON answer with a fresh identity (embeddings carry none, and go as stored).
pub fn json_answer(stored: &Bytes, identity: &Identity) -> Bytes {
    match serde_json::from_slice::<Value>(stored) {
        Ok(Value::Object(mut object)) if object.contains_key("id") => {
            identity.refresh(&mut object);
            serde_json::to_vec(&object).map_or_else(|_| stored.clone(), Bytes::from)
        }
        _ => stored.clone(),
    }
}

fn event(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    // A Value always serializes.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// A stored JSON chat completion or completion told as a stream; `None` for answers it
/// cannot tell (another endpoint, or not an answer).
pub fn stream_from_json(
    stored: &[u8],
    endpoint: Endpoint,
    include_usage: bool,
    identity: &Identity,
) -> Option<Bytes> {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(stored) else {
        return None;
    };
    let id = identity.id_like(answer.get("id")?.as_str()?);
    let model = answer.get("model").cloned().unwrap_or(Value::Null);
    let choices = answer.get("choices")?.as_array()?;
    let mut out = Vec::with_capacity(stored.len() * 2);
    let mut chunk = |choices: Value, extra: Option<(&str, &Value)>| {
        let mut object = Map::new();
        object.insert("id".into(), Value::String(id.clone()));
        object.insert(
            "object".into(),
            Value::from(match endpoint {
                Endpoint::ChatCompletions => "chat.completion.chunk",
                _ => "text_completion",
            }),
        );
        object.insert("created".into(), Value::from(identity.created));
        object.insert("model".into(), model.clone());
        if let Some(fingerprint) = answer.get("system_fingerprint") {
            object.insert("system_fingerprint".into(), fingerprint.clone());
        }
        object.insert("choices".into(), choices);
        if let Some((name, value)) = extra {
            object.insert(name.into(), value.clone());
        }
        event(&mut out, &Value::Object(object));
    };
    for choice in choices {
        let index = choice.get("index").cloned().unwrap_or(Value::from(0));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        match endpoint {
            Endpoint::ChatCompletions => {
                let message = choice.get("message")?.as_object()?;
                let role = message.get("role").cloned().unwrap_or(json!("assistant"));
                chunk(
                    json!([{ "index": index, "delta": { "role": role, "content": "" }, "logprobs": null, "finish_reason": null }]),
                    None,
                );
                let mut delta = Map::new();
                for field in ["content", "refusal"] {
                    if let Some(text) = message.get(field).filter(|v| v.is_string()) {
                        delta.insert(field.into(), text.clone());
                    }
                }
                if let Some(Value::Array(calls)) = message.get("tool_calls") {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| {
                            let mut call = call.clone();
                            if let Value::Object(fields) = &mut call {
                                fields.insert("index".into(), Value::from(i));
                            }
                            call
                        })
                        .collect();
                    delta.insert("tool_calls".into(), Value::Array(calls));
                }
                if !delta.is_empty() {
                    chunk(
                        json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": null }]),
                        None,
                    );
                }
                chunk(
                    json!([{ "index": index, "delta": {}, "logprobs": null, "finish_reason": finish }]),
                    None,
                );
            }
            Endpoint::Completions => {
                let text = choice.get("text").cloned().unwrap_or(json!(""));
                chunk(
                    json!([{ "index": index, "text": text, "logprobs": null, "finish_reason": null }]),
                    None,
                );
                chunk(
                    json!([{ "index": index, "text": "", "logprobs": null, "finish_reason": finish }]),
                    None,
                );
            }
            _ => return None,
        }
    }
    if include_usage && let Some(usage) = answer.get("usage") {
        chunk(json!([]), Some(("usage", usage)));
    }
    out.extend_from_slice(DONE);
    Some(Bytes::from(out))
}

/// A stored stream replayed: each chunk gets the fresh identity; the usage chunk is kept
/// only if the client asked for it, and made from the stored counts if the stored stream
/// lacks one (its client had not asked). Lines that are not chunks (`event:` lines, other
/// APIs' events) go as stored.
pub fn replay_stream(
    stored: &[u8],
    include_usage: bool,
    usage: (u64, u64),
    identity: &Identity,
) -> Bytes {
    let mut out = Vec::with_capacity(stored.len() + 256);
    let mut saw_usage = false;
    let mut last: Option<Map<String, Value>> = None;
    for block in stored
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|line| line.is_empty())
    {
        if block.is_empty() {
            continue;
        }
        for line in block {
            let Some(data) = line
                .strip_prefix(b"data: ")
                .or_else(|| line.strip_prefix(b"data:"))
            else {
                out.extend_from_slice(line);
                out.push(b'\n');
                continue;
            };
            if data.trim_ascii() == b"[DONE]" {
                if include_usage
                    && !saw_usage
                    && let Some(mut tail) = last.take()
                {
                    tail.insert("choices".into(), json!([]));
                    tail.insert(
                        "usage".into(),
                        json!({ "prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1 }),
                    );
                    event(&mut out, &Value::Object(tail));
                }
                out.extend_from_slice(DONE);
                continue;
            }
            let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(data) else {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\n\n");
                continue;
            };
            let has_usage = chunk.get("usage").is_some_and(|u| !u.is_null());
            let usage_only = has_usage
                && chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
            saw_usage |= has_usage;
            identity.refresh(&mut chunk);
            if !include_usage {
                if usage_only {
                    continue;
                }
                chunk.remove("usage");
            }
            last = Some(chunk.clone());
            event(&mut out, &Value::Object(chunk));
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(stream)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn text_of(stream: &[u8]) -> String {
        events(stream)
            .iter()
            .filter_map(|e| {
                e.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }

    const ANSWER: &str = r#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    #[test]
    fn a_json_answer_gets_a_fresh_identity_and_keeps_the_rest() {
        let identity = Identity::new();
        let answer = json_answer(&Bytes::from(ANSWER), &identity);
        let value: Value = serde_json::from_slice(&answer).unwrap();
        let id = value["id"].as_str().unwrap();
        assert!(id.starts_with("chatcmpl-") && id != "chatcmpl-abc123");
        assert_eq!(value["created"], identity.created);
        assert_eq!(value["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(value["usage"]["total_tokens"], 7);
        let embedding = Bytes::from(r#"{"object":"list","data":[]}"#);
        assert_eq!(json_answer(&embedding, &identity), embedding);
    }

    #[test]
    fn a_json_answer_streams_as_role_content_finish_usage_done() {
        let identity = Identity::new();
        let stream = stream_from_json(
            ANSWER.as_bytes(),
            Endpoint::ChatCompletions,
            true,
            &identity,
        )
        .unwrap();
        assert!(stream.ends_with(b"data: [DONE]\n\n"));
        let events = events(&stream);
        assert_eq!(events.len(), 4);
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(text_of(&stream), "Hello there");
        assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[3]["usage"]["completion_tokens"], 2);
        assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk"
            && e["id"] == events[0]["id"]
            && e["system_fingerprint"] == "fp_1"));
        let without = stream_from_json(
            ANSWER.as_bytes(),
            Endpoint::ChatCompletions,
            false,
            &identity,
        )
        .unwrap();
        assert_eq!(super::tests::events(&without).len(), 3);
        assert!(
            stream_from_json(ANSWER.as_bytes(), Endpoint::Embeddings, false, &identity).is_none()
        );
    }

    #[test]
    fn a_stored_stream_replays_with_or_without_usage() {
        let stored = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
                      data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                      data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
                      data: [DONE]\n\n";
        let identity = Identity::new();
        let with = replay_stream(stored.as_bytes(), true, (3, 1), &identity);
        assert_eq!(events(&with).len(), 3);
        assert_eq!(text_of(&with), "Hi");
        assert!(
            events(&with)
                .iter()
                .all(|e| e["created"] == identity.created && e["id"] != "chatcmpl-1")
        );
        let without = replay_stream(stored.as_bytes(), false, (3, 1), &identity);
        assert_eq!(events(&without).len(), 2);
        assert!(without.ends_with(b"data: [DONE]\n\n"));
        // Stored without usage (its client had not asked): made from the stored counts.
        let bare = stored.replace("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n", "");
        let made = replay_stream(bare.as_bytes(), true, (3, 1), &identity);
        let events = events(&made);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["usage"]["total_tokens"], 4);
        assert_eq!(events[2]["choices"], json!([]));
    }
}
