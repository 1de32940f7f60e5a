//! A Messages answer as a `chat.completion`: text blocks joined into `content`, `tool_use`
//! blocks as `tool_calls` (arguments as a JSON string), `stop_reason` as `finish_reason`,
//! and `usage` with the cached input tokens (`prompt_tokens_details.cached_tokens`).
//! Thinking blocks are not part of an OpenAI answer and are left out.

use serde_json::{Value, json};

use super::{MessagesUsage, finish_reason};

/// The answer for the client (which asked for `model`), and the usage read from it; `None`
/// when the body is not a Messages answer.
pub fn translate(body: &[u8], model: &str, created: u64) -> Option<(Vec<u8>, MessagesUsage)> {
    let message: Value = serde_json::from_slice(body).ok()?;
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return None;
    }
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut usage = MessagesUsage::default();
    if let Some(u) = message.get("usage") {
        usage.update(u);
    }
    let mut reply = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        reply["tool_calls"] = Value::Array(tool_calls);
    }
    let completion = json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage.openai(),
    });
    Some((serde_json::to_vec(&completion).ok()?, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(message: Value) -> Value {
        let (body, _) = translate(message.to_string().as_bytes(), "claude", 1_700_000_000).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn text_usage_and_stop_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let v = answer(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
                "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
                          "cache_read_input_tokens": 100, "output_tokens": 7},
            }));
            assert_eq!(v["choices"][0]["finish_reason"], finish);
            assert_eq!(v["choices"][0]["message"]["content"], "Hello world");
            assert_eq!(v["model"], "claude");
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(
                v["usage"],
                json!({"prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122,
                       "prompt_tokens_details": {"cached_tokens": 100}})
            );
        }
    }

    #[test]
    fn tool_use_becomes_tool_calls() {
        let v = answer(json!({
            "id": "msg_2", "type": "message", "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 3, "output_tokens": 4},
        }));
        let message = &v["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(
            message["tool_calls"],
            json!([
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}])
        );
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }

    #[test]
    fn not_a_message_is_not_translated() {
        assert!(translate(br#"{"type":"error","error":{}}"#, "m", 0).is_none());
        assert!(translate(b"not json", "m", 0).is_none());
    }
}
