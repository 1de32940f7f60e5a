//! A hit's fresh identity, and a stored JSON answer told again as the stream the client
//! asked for (role chunk, content chunk, finish chunk, the usage chunk, `[DONE]`), so the
//! SDKs assemble the same text. `template` prepares either for serving.

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
}

fn event(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    // A Value always serializes.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// A stored JSON chat completion or completion told as a stream, its usage event included
/// (the template leaves it out for clients that did not ask); `None` for answers it cannot
/// tell (another endpoint, or not an answer).
pub fn stream_from_json(stored: &[u8], endpoint: Endpoint, identity: &Identity) -> Option<Bytes> {
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
    if let Some(usage) = answer.get("usage") {
        chunk(json!([]), Some(("usage", usage)));
    }
    out.extend_from_slice(DONE);
    Some(Bytes::from(out))
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
    fn a_json_answer_streams_as_role_content_finish_usage_done() {
        let identity = Identity::new();
        let stream =
            stream_from_json(ANSWER.as_bytes(), Endpoint::ChatCompletions, &identity).unwrap();
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
        let told = crate::cache::template::Template::of_stream(&stream, "gpt-4o-mini", (5, 2));
        let without = told.render(&identity, false);
        assert_eq!(super::tests::events(&without).len(), 3);
        assert!(stream_from_json(ANSWER.as_bytes(), Endpoint::Embeddings, &identity).is_none());
    }
}
