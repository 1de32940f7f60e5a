//! Token estimates for requests whose upstream reported no usage (a client abort, an
//! upstream failure, a provider without usage): the prompt is counted with OpenAI's
//! o200k tokenizer, the completion from the stream's content events (about one token
//! each) or, for a JSON answer, its size. Runs in the metering task, never on the request
//! path (the tokenizer's tables take a moment to load the first time).

use serde_json::Value;

/// Tokens of a request's prompt: the text of its messages (or prompt / input), plus
/// OpenAI's per-message framing.
pub fn prompt_tokens(body: &[u8]) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return count(&String::from_utf8_lossy(body));
    };
    if let Some(messages) = value.get("messages").and_then(Value::as_array) {
        // Each message costs 3 tokens of framing, the reply's priming 3 more.
        let mut total = 3;
        for message in messages {
            total += 3;
            let mut text = String::new();
            collect_text(message, &mut text);
            total += count(&text);
        }
        return total;
    }
    let mut text = String::new();
    for field in ["prompt", "input", "instructions"] {
        if let Some(v) = value.get(field) {
            collect_text(v, &mut text);
        }
    }
    count(&text)
}

/// Every string inside `value`, joined by spaces (roles, names, text parts).
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "image_url" && k.as_str() != "input_audio")
            .for_each(|(_, v)| collect_text(v, out)),
        _ => {}
    }
}

/// Completion tokens of an answer that reported no usage.
pub fn completion_tokens(content_events: u64, response_bytes: u64, streamed: bool) -> u64 {
    if streamed {
        content_events
    } else {
        // A JSON answer's text is most of its bytes; about four bytes a token.
        response_bytes / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_counted_with_the_tokenizer() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello, world!"}]}"#;
        // "user Hello, world! " is 5 tokens in o200k, plus 3 + 3 framing.
        let n = prompt_tokens(body);
        assert!((9..=13).contains(&n), "{n}");
        let plain = prompt_tokens(br#"{"model":"m","input":"one two three"}"#);
        assert_eq!(plain, 4);
        assert!(prompt_tokens(b"not json at all") > 0);
    }
}
