//! `POST /v1/completions` (and its Azure twin): the legacy `text_completion` shape, streamed
//! or not.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::ids::unix_now;
use crate::pipeline::{ApiRequest, Call, Endpoint};
use crate::prompt::{JsonStr, PromptInput};
use crate::reply::{self, Ctx, Reply};
use crate::sse;
use crate::text;
use crate::usage::{ChunkPlan, StreamOptions, Usage, finish_reason, include_usage};

#[derive(Deserialize)]
pub struct CompletionRequest<'a> {
    #[serde(borrow, default)]
    model: Option<JsonStr<'a>>,
    /// Optional, as in the API (which then completes from an empty prompt).
    #[serde(default)]
    prompt: Option<PromptInput>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

impl ApiRequest for CompletionRequest<'_> {
    fn model(&self) -> Option<&str> {
        self.model.as_ref().map(|m| &*m.0)
    }
    fn stream(&self) -> Option<bool> {
        self.stream
    }
}

pub struct Completions;

impl Endpoint for Completions {
    type Req<'a> = CompletionRequest<'a>;

    fn respond(app: &App, ctx: &Ctx, req: &CompletionRequest<'_>, call: &Call<'_>) -> Reply {
        let prompt = req.prompt.as_ref().map(|p| p.0).unwrap_or_default();
        let prompt_tokens = prompt.content_tokens();
        let seed = prompt.seed(call.model);
        let (n, truncated) = call
            .behavior
            .completion_len(app.default_tokens, req.max_tokens);
        let id = app.ids.make("cmpl-");
        let created = unix_now();
        let usage = Usage::new(prompt_tokens, n);
        app.stats.prompt_tokens(prompt_tokens);
        let ct = call.behavior.content_type.as_ref();

        if req.stream == Some(true) {
            let model = serde_json::to_string(call.model).unwrap_or_default();
            let plan = ChunkPlan {
                prelude: format!(
                    "data: {{\"id\":\"{id}\",\"object\":\"text_completion\",\"created\":{created},\
                     \"model\":{model},\"system_fingerprint\":\"fp_mock\",\"choices\":["
                ),
                role_choice: None,
                token_open: r#"{"text":"#,
                token_close: r#","index":0,"logprobs":null,"finish_reason":null}"#,
                finish_choice: format!(
                    r#"{{"text":"","index":0,"logprobs":null,"finish_reason":"{}"}}"#,
                    finish_reason(truncated)
                ),
                usage: include_usage(req.stream_options).then_some(&usage),
            }
            .build(seed, n);
            return sse::reply(ctx, plan, call.behavior, &app.stats);
        }

        let text = text::content(seed, n);
        app.stats.completion_tokens(n);
        let completion = TextCompletion {
            id: &id,
            object: "text_completion",
            created,
            model: call.model,
            choices: [Choice {
                text: &text,
                index: 0,
                logprobs: None,
                finish_reason: finish_reason(truncated),
            }],
            usage,
            system_fingerprint: "fp_mock",
        };
        reply::json_ok(ctx, ct, reply::to_json(&completion, 512 + text.len()))
    }
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: &'static str,
}
