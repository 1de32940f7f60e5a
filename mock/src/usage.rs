//! The `usage` object and `stream_options` shared by chat and legacy completions, and the
//! plain `data:` chunk streams both of them send.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::sse::{StreamPlan, TokenTemplate};

#[derive(Clone, Copy, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

pub fn include_usage(opts: Option<StreamOptions>) -> bool {
    opts.and_then(|o| o.include_usage).unwrap_or(false)
}

#[derive(Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Default)]
pub struct PromptDetails {
    pub cached_tokens: u32,
    pub audio_tokens: u32,
}

#[derive(Serialize, Default)]
pub struct CompletionDetails {
    pub reasoning_tokens: u32,
    pub audio_tokens: u32,
    pub accepted_prediction_tokens: u32,
    pub rejected_prediction_tokens: u32,
}

impl Usage {
    pub fn new(prompt: u32, completion: u32) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: PromptDetails::default(),
            completion_tokens_details: CompletionDetails::default(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
    }
}

/// A chat / completions chunk stream. Every chunk is `prelude` + one choice + `]` + usage + `}`.
pub struct ChunkPlan<'a> {
    /// `data: {"id":…,"object":…,…,"choices":[`
    pub prelude: String,
    /// Chat's first chunk (the assistant role), sent before any token.
    pub role_choice: Option<&'a str>,
    /// Choice JSON before and after the quoted token text.
    pub token_open: &'a str,
    pub token_close: &'a str,
    pub finish_choice: String,
    /// `stream_options.include_usage`: the usage chunk to send last (earlier chunks get `"usage":null`).
    pub usage: Option<&'a Usage>,
}

impl ChunkPlan<'_> {
    pub fn build(self, seed: u64, tokens: u32) -> StreamPlan {
        let end = if self.usage.is_some() {
            "],\"usage\":null}\n\n"
        } else {
            "]}\n\n"
        };
        let chunk = |choice: &str| Bytes::from([self.prelude.as_str(), choice, end].concat());
        let head = self.role_choice.map(chunk).into_iter().collect();
        let mut tail = vec![chunk(&self.finish_choice)];
        if let Some(usage) = self.usage {
            tail.push(Bytes::from(format!(
                "{}],\"usage\":{}}}\n\n",
                self.prelude,
                usage.json()
            )));
        }
        tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let template = TokenTemplate {
            prefix: [self.prelude.as_str(), self.token_open].concat(),
            seq_base: None,
            after_seq: String::new(),
            suffix: [self.token_close, end].concat(),
        };
        StreamPlan {
            head,
            template,
            tail,
            seed,
            tokens,
        }
    }
}

pub fn finish_reason(truncated: bool) -> &'static str {
    if truncated { "length" } else { "stop" }
}
