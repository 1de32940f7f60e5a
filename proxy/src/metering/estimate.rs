//! Token estimates for requests whose upstream reported no usage (a client abort, an
//! upstream failure, a provider without usage): the prompt is counted with OpenAI's
//! o200k tokenizer and its chat framing, the completion from the stream's content events
//! (one token each) or, for a JSON answer, its size. Runs in the metering task, never on
//! the request path.
//!
//! The tokenizer's vocabulary is static (`tollgate-tokenizer`: tables in the binary, read
//! when a count touches them). What it builds is its split pattern, about 10 ms of CPU, and
//! the matching caches that pattern grows; estimates are occasional (a stream cut by its
//! client is the common case), so it is built when one needs it and dropped once none has
//! for [`KEEP_UNUSED`].

use std::{
    sync::{Arc, Mutex, PoisonError, TryLockError},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate_tokenizer::Tokenizer;

use crate::downstream::endpoints::Endpoint;

/// OpenAI's chat format: every message costs 3 tokens of framing, a `name` one more, and
/// the reply's priming 3.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;

/// How long the tokenizer stays built after its last use: at most one rebuild (10 ms of CPU
/// on a blocking thread) per this interval when estimates are sparse.
const KEEP_UNUSED: Duration = Duration::from_secs(30);

struct Built {
    tokenizer: Arc<Tokenizer>,
    last_used: Instant,
}

static TOKENIZER: Mutex<Option<Built>> = Mutex::new(None);

/// The o200k tokenizer, built if it is not (under the lock: estimates running at once wait
/// for one build rather than each making their own).
fn tokenizer() -> Result<Arc<Tokenizer>, tollgate_tokenizer::Error> {
    let mut slot = TOKENIZER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(built) = slot.as_mut() {
        built.last_used = Instant::now();
        return Ok(built.tokenizer.clone());
    }
    let tokenizer = Arc::new(Tokenizer::new()?);
    *slot = Some(Built {
        tokenizer: tokenizer.clone(),
        last_used: Instant::now(),
    });
    Ok(tokenizer)
}

/// Drops the tokenizer if no estimate used it for [`KEEP_UNUSED`] (an estimate still running
/// keeps its copy until it ends). Answers whether it is built.
pub fn release_unused_tokenizer() -> bool {
    release_unused_after(KEEP_UNUSED)
}

fn release_unused_after(unused: Duration) -> bool {
    // Never waits: it runs on the metering task, and the lock is held through a build.
    let mut slot = match TOKENIZER.try_lock() {
        Ok(slot) => slot,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        // Being built or handed to an estimate right now: in use.
        Err(TryLockError::WouldBlock) => return true,
    };
    if slot
        .as_ref()
        .is_some_and(|b| b.last_used.elapsed() >= unused)
    {
        // Dropped outside the lock: freeing the caches takes a moment.
        let built = slot.take();
        drop(slot);
        drop(built);
        return false;
    }
    slot.is_some()
}

fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match tokenizer() {
        Ok(tokenizer) => tokenizer.count(text),
        // Not expected (the pattern is built in): a token per four bytes, as for a failure.
        Err(e) => {
            tracing::warn!("the tokenizer could not be built, estimating by size: {e}");
            (text.len() as u64).div_ceil(4)
        }
    }
}

/// Tokens of a request's prompt as the upstream counts them.
pub fn prompt_tokens(endpoint: Endpoint, body: &[u8]) -> u64 {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return count(&String::from_utf8_lossy(body));
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = value.get("messages").and_then(Value::as_array);
            let framed: u64 = messages.into_iter().flatten().map(message).sum();
            REPLY_PRIMING + framed
        }
        // Instructions are a leading system message; each input item a message.
        Endpoint::Responses => {
            let mut framed = value
                .get("instructions")
                .and_then(Value::as_str)
                .map_or(0, |s| TOKENS_PER_MESSAGE + count(s));
            match value.get("input") {
                Some(Value::Array(items)) => {
                    let mut ids = None;
                    for item in items {
                        match item {
                            Value::Number(_) => *ids.get_or_insert(TOKENS_PER_MESSAGE) += 1,
                            Value::Object(_) => framed += message(item),
                            other => framed += TOKENS_PER_MESSAGE + plain(other),
                        }
                    }
                    framed += ids.unwrap_or(0);
                }
                Some(other) => framed += TOKENS_PER_MESSAGE + plain(other),
                None => {}
            }
            REPLY_PRIMING + framed
        }
        // Legacy completions and embeddings count their text alone.
        Endpoint::Completions => value.get("prompt").map_or(0, plain),
        Endpoint::Embeddings => value.get("input").map_or(0, plain),
        // Anthropic's messages: the system prompt, then each message, framed as chat's.
        Endpoint::Messages | Endpoint::CountTokens => {
            let system = value
                .get("system")
                .map_or(0, |s| TOKENS_PER_MESSAGE + plain(s));
            let messages = value.get("messages").and_then(Value::as_array);
            REPLY_PRIMING + system + messages.into_iter().flatten().map(message).sum::<u64>()
        }
    }
}

/// One chat message (or Responses item): framing, role, name and the text of its content.
fn message(msg: &Value) -> u64 {
    let Some(fields) = msg.as_object() else {
        // Not a message object (a bare string or token ids): its text, framed.
        return TOKENS_PER_MESSAGE + plain(msg);
    };
    let mut tokens = TOKENS_PER_MESSAGE;
    if let Some(role) = fields.get("role").and_then(Value::as_str) {
        tokens += count(role);
    }
    if let Some(name) = fields.get("name").and_then(Value::as_str) {
        tokens += count(name) + TOKENS_PER_NAME;
    }
    for field in ["content", "output"] {
        match fields.get(field) {
            Some(Value::String(s)) => tokens += count(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part {
                        Value::String(s) => tokens += count(s),
                        // Text parts count; images and audio are priced by the upstream's
                        // own rules, which an estimate does not attempt.
                        Value::Object(p) => {
                            tokens += p.get("text").and_then(Value::as_str).map_or(0, count)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    tokens
}

/// A text prompt: a string, strings, token ids or arrays of token ids.
fn plain(value: &Value) -> u64 {
    match value {
        Value::String(s) => count(s),
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(plain).sum(),
        _ => 0,
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
    fn the_tokenizer_is_dropped_when_unused_and_built_again_when_needed() {
        let before = count("Hello, world!");
        assert!(
            release_unused_after(Duration::from_secs(3600)),
            "kept while in use"
        );
        // Other tests take the lock for a moment when they count: then it answers "in use".
        while release_unused_after(Duration::ZERO) {
            std::thread::yield_now();
        }
        assert_eq!(count("Hello, world!"), before);
        assert!(
            release_unused_after(Duration::from_secs(3600)),
            "built again"
        );
    }

    #[test]
    fn chat_prompts_are_counted_with_the_tokenizer_and_framing() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello, world!"}]}"#;
        // priming 3 + (framing 3 + "user" 1 + "Hello, world!" 4)
        assert_eq!(prompt_tokens(Endpoint::ChatCompletions, body), 11);
        let parts = br#"{"messages":[{"role":"user","name":"bob","content":[{"type":"text","text":"Hello, world!"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        assert_eq!(
            prompt_tokens(Endpoint::ChatCompletions, parts),
            11 + count("bob") + 1
        );
    }

    #[test]
    fn other_endpoints() {
        let text = br#"{"model":"m","input":"one two three"}"#;
        assert_eq!(prompt_tokens(Endpoint::Embeddings, text), 3);
        assert_eq!(prompt_tokens(Endpoint::Responses, text), 3 + 3 + 3);
        let ids = br#"{"model":"m","prompt":[[1,2,3],[4]]}"#;
        assert_eq!(prompt_tokens(Endpoint::Completions, ids), 4);
        let items = br#"{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}"#;
        assert_eq!(
            prompt_tokens(Endpoint::Responses, items),
            3 + (3 + count("be brief")) + (3 + 1 + count("hi"))
        );
        assert!(prompt_tokens(Endpoint::ChatCompletions, b"not json at all") > 0);
        // A bare string where a message belongs counts like the upstream counts it.
        let bare = br#"{"messages":["Hello, world!"]}"#;
        assert_eq!(prompt_tokens(Endpoint::ChatCompletions, bare), 3 + 3 + 4);
    }
}
