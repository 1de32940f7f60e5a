//! Anthropic's Messages API behind the OpenAI API: a chat completion request becomes a
//! Messages request ([`request`]), and the answer comes back as a `chat.completion`
//! ([`response`]) or, streamed, as `chat.completion.chunk` events translated event by event
//! ([`stream`]); Anthropic's errors become OpenAI's ([`errors`]).
//!
//! What cannot be expressed is refused with a 400 that names the parameter, never dropped
//! silently — unless the deployment says to drop it.

pub mod errors;
pub mod request;
pub mod response;
pub mod stream;

/// The `anthropic-version` sent when the client or the config names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and none at all.
        _ => "stop",
    }
}

/// Anthropic's usage as OpenAI counts it: the prompt is every input token, cached or not,
/// and `cached_tokens` the part read from the prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagesUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl MessagesUsage {
    /// Reads the counts present in an Anthropic `usage` object over the ones already known
    /// (`message_delta` repeats only some of them).
    pub fn update(&mut self, usage: &serde_json::Value) {
        let get = |key: &str| usage.get(key).and_then(serde_json::Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation_input_tokens = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read_input_tokens = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output_tokens = n;
        }
    }

    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }

    /// OpenAI's `usage` object.
    pub fn openai(&self) -> serde_json::Value {
        let prompt = self.prompt_tokens();
        serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output_tokens,
            "total_tokens": prompt.saturating_add(self.output_tokens),
            "prompt_tokens_details": { "cached_tokens": self.cache_read_input_tokens },
        })
    }
}

impl From<MessagesUsage> for crate::usage::Usage {
    fn from(u: MessagesUsage) -> Self {
        crate::usage::Usage {
            prompt_tokens: u.prompt_tokens(),
            completion_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens,
            cache_write_tokens: u.cache_creation_input_tokens,
        }
    }
}
