//! `POST /v1/chat/completions` (and its Azure twin): `chat.completion` objects and
//! `chat.completion.chunk` streams, as the OpenAI SDKs parse them.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::errors::ApiError;
use crate::ids::unix_now;
use crate::pipeline::{ApiRequest, Call, Endpoint};
use crate::prompt::{ChatMessages, JsonStr};
use crate::reply::{self, Ctx, Reply};
use crate::sse;
use crate::text;
use crate::usage::{ChunkPlan, StreamOptions, Usage, finish_reason, include_usage};

#[derive(Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<JsonStr<'a>>,
    #[serde(default)]
    messages: Option<ChatMessages>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
}

impl ApiRequest for ChatRequest<'_> {
    fn model(&self) -> Option<&str> {
        self.model.as_ref().map(|m| &*m.0)
    }
    fn stream(&self) -> Option<bool> {
        self.stream
    }
    fn validate(&self) -> Result<(), ApiError> {
        match &self.messages {
            None => Err(ApiError::missing("messages")),
            Some(m) if m.0.messages() == 0 => Err(ApiError::invalid(
                "messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            )),
            Some(_) => Ok(()),
        }
    }
}

pub struct Chat;

impl Endpoint for Chat {
    type Req<'a> = ChatRequest<'a>;

    fn respond(app: &App, ctx: &Ctx, req: &ChatRequest<'_>, call: &Call<'_>) -> Reply {
        let prompt = req.messages.as_ref().map(|m| m.0).unwrap_or_default();
        let prompt_tokens = prompt.prompt_tokens();
        let seed = prompt.seed(call.model);
        let (n, truncated) = call.behavior.completion_len(
            app.default_tokens,
            req.max_completion_tokens.or(req.max_tokens),
        );
        let id = app.ids.make("chatcmpl-");
        let created = unix_now();
        let usage = Usage::new(prompt_tokens, n);
        app.stats.prompt_tokens(prompt_tokens);
        let ct = call.behavior.content_type.as_ref();

        if req.stream == Some(true) {
            let model = serde_json::to_string(call.model).unwrap_or_default();
            let plan = ChunkPlan {
                prelude: format!(
                    "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\
                     \"model\":{model},\"service_tier\":\"default\",\"system_fingerprint\":\"fp_mock\",\"choices\":["
                ),
                role_choice: Some(
                    r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
                ),
                token_open: r#"{"index":0,"delta":{"content":"#,
                token_close: r#"},"logprobs":null,"finish_reason":null}"#,
                finish_choice: format!(
                    r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{}"}}"#,
                    finish_reason(truncated)
                ),
                usage: include_usage(req.stream_options).then_some(&usage),
            }
            .build(seed, n);
            return sse::reply(ctx, plan, call.behavior, &app.stats);
        }

        let content = text::content(seed, n);
        app.stats.completion_tokens(n);
        let completion = ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: call.model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: &content,
                    refusal: None,
                    annotations: [],
                },
                logprobs: None,
                finish_reason: finish_reason(truncated),
            }],
            usage,
            service_tier: "default",
            system_fingerprint: "fp_mock",
        };
        reply::json_ok(ctx, ct, reply::to_json(&completion, 768 + content.len()))
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
    annotations: [(); 0],
}
