//! `POST /v1/responses`: the Responses API object, and its typed event stream
//! (`event: response.*` with `sequence_number`, no `[DONE]`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::ids::unix_now;
use crate::pipeline::{ApiRequest, Call, Endpoint};
use crate::prompt::{ItemDigest, JsonStr, PromptInput};
use crate::reply::{self, Ctx, Reply};
use crate::sse::{self, StreamPlan, TokenTemplate};
use crate::text;

#[derive(Deserialize)]
pub struct ResponsesRequest<'a> {
    #[serde(borrow, default)]
    model: Option<JsonStr<'a>>,
    /// A string or a list of input items; may be absent (e.g. with `previous_response_id`).
    #[serde(default)]
    input: Option<PromptInput>,
    #[serde(borrow, default)]
    instructions: Option<JsonStr<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

impl ApiRequest for ResponsesRequest<'_> {
    fn model(&self) -> Option<&str> {
        self.model.as_ref().map(|m| &*m.0)
    }
    fn stream(&self) -> Option<bool> {
        self.stream
    }
}

pub struct Responses;

impl Endpoint for Responses {
    type Req<'a> = ResponsesRequest<'a>;

    fn respond(app: &App, ctx: &Ctx, req: &ResponsesRequest<'_>, call: &Call<'_>) -> Reply {
        let instructions = req.instructions.as_ref().map(|i| &*i.0);
        // Instructions count as a leading system message.
        let mut prompt = crate::prompt::PromptDigest::default();
        if let Some(i) = instructions {
            prompt.add(ItemDigest::of_text(i));
        }
        if let Some(input) = &req.input {
            prompt.merge(&input.0);
        }
        let prompt_tokens = prompt.prompt_tokens();
        let seed = prompt.seed(call.model);
        let (n, truncated) = call
            .behavior
            .completion_len(app.default_tokens, req.max_output_tokens);
        app.stats.prompt_tokens(prompt_tokens);

        let resp_id = app.ids.make("resp_");
        let msg_id = app.ids.make("msg_");
        let content = text::content(seed, n);
        let status = if truncated { "incomplete" } else { "completed" };
        let part = OutputText {
            kind: "output_text",
            text: &content,
            annotations: [],
            logprobs: [],
        };
        let done = ResponseObject {
            id: &resp_id,
            created_at: unix_now(),
            status,
            incomplete_details: truncated.then_some(Incomplete {
                reason: "max_output_tokens",
            }),
            instructions,
            max_output_tokens: req.max_output_tokens,
            model: call.model,
            output: vec![OutputMessage {
                kind: "message",
                id: &msg_id,
                status,
                role: "assistant",
                content: vec![part],
            }],
            usage: Some(Usage {
                input_tokens: prompt_tokens,
                input_tokens_details: InputDetails { cached_tokens: 0 },
                output_tokens: n,
                output_tokens_details: OutputDetails {
                    reasoning_tokens: 0,
                },
                total_tokens: prompt_tokens.saturating_add(n),
            }),
            ..ResponseObject::base()
        };
        let ct = call.behavior.content_type.as_ref();

        if req.stream != Some(true) {
            app.stats.completion_tokens(n);
            return reply::json_ok(ctx, ct, reply::to_json(&done, 1024 + 2 * content.len()));
        }
        let plan = stream_plan(&done, &msg_id, &content, seed, n);
        sse::reply(ctx, plan, call.behavior, &app.stats)
    }
}

fn event(kind: &str, seq: u32, fields: &str) -> Bytes {
    Bytes::from(format!(
        "event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq},{fields}}}\n\n"
    ))
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// created → in_progress → output_item.added → content_part.added → output_text.delta × n →
/// output_text.done → content_part.done → output_item.done → completed (or incomplete).
fn stream_plan(
    done: &ResponseObject<'_>,
    msg_id: &str,
    content: &str,
    seed: u64,
    n: u32,
) -> StreamPlan {
    let started = ResponseObject {
        status: "in_progress",
        incomplete_details: None,
        output: Vec::new(),
        usage: None,
        ..done.clone()
    };
    let started = json(&started);
    let empty_item = OutputMessage {
        kind: "message",
        id: msg_id,
        status: "in_progress",
        role: "assistant",
        content: Vec::new(),
    };
    let empty_part = OutputText {
        kind: "output_text",
        text: "",
        annotations: [],
        logprobs: [],
    };
    let at = format!("\"item_id\":\"{msg_id}\",\"output_index\":0,\"content_index\":0");
    let head = vec![
        event("response.created", 0, &format!("\"response\":{started}")),
        event(
            "response.in_progress",
            1,
            &format!("\"response\":{started}"),
        ),
        event(
            "response.output_item.added",
            2,
            &format!("\"output_index\":0,\"item\":{}", json(&empty_item)),
        ),
        event(
            "response.content_part.added",
            3,
            &format!("{at},\"part\":{}", json(&empty_part)),
        ),
    ];
    let seq = 4 + n;
    let item = done.output.first();
    let part = item.and_then(|m| m.content.first());
    let last = if done.status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    let text = serde_json::to_string(content).unwrap_or_default();
    let tail = vec![
        event(
            "response.output_text.done",
            seq,
            &format!("{at},\"text\":{text},\"logprobs\":[]"),
        ),
        event(
            "response.content_part.done",
            seq + 1,
            &format!("{at},\"part\":{}", json(&part)),
        ),
        event(
            "response.output_item.done",
            seq + 2,
            &format!("\"output_index\":0,\"item\":{}", json(&item)),
        ),
        event(last, seq + 3, &format!("\"response\":{}", json(done))),
    ];
    let template = TokenTemplate {
        prefix: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":"
            .to_owned(),
        seq_base: Some(4),
        after_seq: format!(",{at},\"delta\":"),
        suffix: ",\"logprobs\":[]}\n\n".to_owned(),
    };
    StreamPlan {
        head,
        template,
        tail,
        seed,
        tokens: n,
    }
}

/// The fields the SDK's `Response` model reads; fixed ones mirror OpenAI's defaults.
#[derive(Clone, Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    background: bool,
    error: Option<()>,
    incomplete_details: Option<Incomplete>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u32>,
    model: &'a str,
    output: Vec<OutputMessage<'a>>,
    parallel_tool_calls: bool,
    previous_response_id: Option<()>,
    reasoning: Reasoning,
    service_tier: &'static str,
    store: bool,
    temperature: f32,
    text: TextConfig,
    tool_choice: &'static str,
    tools: [(); 0],
    top_p: f32,
    truncation: &'static str,
    usage: Option<Usage>,
    user: Option<()>,
    metadata: Empty,
}

impl ResponseObject<'_> {
    fn base() -> Self {
        ResponseObject {
            id: "",
            object: "response",
            created_at: 0,
            status: "completed",
            background: false,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "",
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: Reasoning {
                effort: None,
                summary: None,
            },
            service_tier: "default",
            store: true,
            temperature: 1.0,
            text: TextConfig {
                format: Format { kind: "text" },
            },
            tool_choice: "auto",
            tools: [],
            top_p: 1.0,
            truncation: "disabled",
            usage: None,
            user: None,
            metadata: Empty {},
        }
    }
}

#[derive(Clone, Copy, Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Clone, Serialize)]
struct OutputMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'a str,
    role: &'static str,
    content: Vec<OutputText<'a>>,
}

#[derive(Clone, Copy, Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
    logprobs: [(); 0],
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    input_tokens: u32,
    input_tokens_details: InputDetails,
    output_tokens: u32,
    output_tokens_details: OutputDetails,
    total_tokens: u32,
}

#[derive(Clone, Copy, Serialize)]
struct InputDetails {
    cached_tokens: u32,
}

#[derive(Clone, Copy, Serialize)]
struct OutputDetails {
    reasoning_tokens: u32,
}

#[derive(Clone, Copy, Serialize)]
struct Reasoning {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Clone, Copy, Serialize)]
struct TextConfig {
    format: Format,
}

#[derive(Clone, Copy, Serialize)]
struct Format {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Clone, Copy, Serialize)]
struct Empty {}
