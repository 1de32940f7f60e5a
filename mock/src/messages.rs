//! Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`, in
//! Anthropic's shapes — `message` objects, the SSE event stream (`message_start`,
//! `content_block_start` / `_delta` / `_stop` for text and tool use with `input_json_delta`
//! arguments, `ping`, `message_delta` with usage, `message_stop`), prompt-cache usage
//! (`cache_creation_input_tokens` the first time a `cache_control` prefix is seen,
//! `cache_read_input_tokens` after), and Anthropic's errors
//! (`{"type":"error","error":{"type","message"}}`, `overloaded_error` on 529).
//!
//! Tool use: when the request offers `tools` and its last user turn carries no
//! `tool_result`, the answer calls a tool — the one `tool_choice` names, else the first —
//! with arguments made from its `input_schema`; under `tool_choice` `auto` a short text
//! comes first, as models do. `tool_choice` `none` answers in text.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::behavior::split_model;
use crate::pipeline::{BODY_LIMIT, behavior, inject};
use crate::reply::{self, Ctx, JSON, Reply};
use crate::sse::{self, StreamPlan, TokenTemplate};
use crate::stats::Rejection;
use crate::text;

/// An Anthropic error: its HTTP status, `error.type` and message.
pub struct MessagesError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u32>,
}

impl MessagesError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        MessagesError {
            status,
            kind: error_type(status),
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// Anthropic's `error.type` for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error_reply(app: &App, ctx: &Ctx, why: Option<Rejection>, e: &MessagesError) -> Reply {
    if let Some(why) = why {
        app.stats.rejected(why);
    }
    let body = json!({
        "type": "error",
        "error": { "type": e.kind, "message": e.message },
        "request_id": ctx.request_id.to_str().unwrap_or_default(),
    });
    let mut resp = reply::ok(ctx, JSON, None, Body::from(body.to_string()));
    *resp.status_mut() = e.status;
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    anthropic_headers(ctx, resp)
}

/// Both endpoints; `count_only` for `/v1/messages/count_tokens`.
pub(crate) async fn post(
    app: &App,
    ctx: &Ctx,
    parts: &Parts,
    body: Body,
    count_only: bool,
) -> Reply {
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        app.log.record(parts, None, None);
        let e = MessagesError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request exceeds the maximum allowed number of bytes.",
        );
        return error_reply(app, ctx, Some(Rejection::BadRequest), &e);
    };
    let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
    let model = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("model"))
        .and_then(Value::as_str);
    let stream = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("stream"))
        .and_then(Value::as_bool);
    app.log.record(parts, model, stream);
    if let Err(e) = authorize(app, parts) {
        return error_reply(app, ctx, Some(Rejection::Unauthorized), &e);
    }
    if parts.headers.get("anthropic-version").is_none() {
        let e = MessagesError::invalid("anthropic-version: header is required");
        return error_reply(app, ctx, Some(Rejection::BadRequest), &e);
    }
    let req = match parsed {
        Ok(Value::Object(req)) => req,
        Ok(_) => {
            let e = MessagesError::invalid("The request body must be a JSON object.");
            return error_reply(app, ctx, Some(Rejection::BadRequest), &e);
        }
        Err(e) => {
            let e = MessagesError::invalid(format!("The request body is not valid JSON: {e}"));
            return error_reply(app, ctx, Some(Rejection::BadRequest), &e);
        }
    };
    let checked = Request::check(&req, count_only);
    let req = match checked {
        Ok(r) => r,
        Err(e) => return error_reply(app, ctx, Some(Rejection::BadRequest), &e),
    };
    let (model, suffix) = split_model(req.model);
    let mut behavior = match behavior(app, &parts.headers, suffix) {
        Ok(b) => b,
        Err(e) => {
            let e = MessagesError::invalid(e.message.to_string());
            return error_reply(app, ctx, Some(Rejection::BadRequest), &e);
        }
    };
    let status = behavior.status.take();
    if let Some(r) = inject(app, ctx, &behavior, model, req.stream).await {
        return r;
    }
    if let Some(code) = status {
        app.stats.injected_status(code);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut e = MessagesError::new(status, injected_message(status));
        e.retry_after = behavior.retry_after;
        return error_reply(app, ctx, None, &e);
    }

    let prompt = Prompt::of(&req);
    if count_only {
        let body = json!({ "input_tokens": prompt.total });
        return anthropic_headers(ctx, reply::json_ok(ctx, None, body.to_string()));
    }
    let (cache_read, cache_write) = app.prompt_cache(prompt.cached_prefix);
    let input_tokens = prompt.total - cache_read - cache_write;
    app.stats.prompt_tokens(prompt.total);
    app.stats.cache_tokens(cache_read, cache_write);

    let (n, truncated) = behavior.completion_len(app.default_tokens, Some(req.max_tokens));
    let tool = req.tool_call();
    // A forced tool call is all the answer; under `auto` a short text leads to it.
    let text_tokens = match &tool {
        Some((_, true)) => 0,
        Some((_, false)) => n.min(6),
        None => n,
    };
    let tool_use = tool.map(|(t, _)| ToolUse {
        id: app.ids.make("toolu_"),
        name: t.name.to_owned(),
        input: arguments(t.schema),
    });
    let tool_tokens = tool_use
        .as_ref()
        .map_or(0, |t| text::text_tokens(&t.input.to_string()));
    app.stats.completion_tokens(tool_tokens);
    let stop_reason = if tool_use.is_some() {
        "tool_use"
    } else if truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let seed = prompt.seed ^ text::hash_str(model);
    let answer = Answer {
        id: app.ids.make("msg_"),
        model,
        input_tokens,
        cache_read,
        cache_write,
        text_tokens,
        tool_use,
        output_tokens: text_tokens + tool_tokens,
        stop_reason,
        seed,
    };
    if req.stream {
        let plan = answer.stream_plan();
        return anthropic_headers(ctx, sse::reply(ctx, plan, &behavior, &app.stats));
    }
    app.stats.completion_tokens(text_tokens);
    let body = answer
        .message(&text::content(seed, text_tokens))
        .to_string();
    anthropic_headers(
        ctx,
        reply::json_ok(ctx, behavior.content_type.as_ref(), body),
    )
}

/// Anthropic's headers in place of OpenAI's: `request-id` and `anthropic-ratelimit-*`.
fn anthropic_headers(ctx: &Ctx, mut resp: Reply) -> Reply {
    let limited = resp.status() == StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    for name in [
        "x-request-id",
        "openai-processing-ms",
        "openai-version",
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ] {
        h.remove(name);
    }
    h.insert("request-id", ctx.request_id.clone());
    let remaining = if limited { "0" } else { "3999" };
    h.insert(
        "anthropic-ratelimit-requests-limit",
        HeaderValue::from_static("4000"),
    );
    if let Ok(v) = HeaderValue::from_str(remaining) {
        h.insert("anthropic-ratelimit-requests-remaining", v);
    }
    h.insert(
        "anthropic-ratelimit-input-tokens-limit",
        HeaderValue::from_static("400000"),
    );
    h.insert(
        "anthropic-ratelimit-output-tokens-limit",
        HeaderValue::from_static("80000"),
    );
    resp
}

fn injected_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        529 => "Overloaded",
        429 => "Number of request tokens has exceeded your per-minute rate limit",
        401 => "invalid x-api-key",
        404 => "model: not found",
        _ => "Internal server error",
    }
}

/// `x-api-key`, or a bearer token, when the mock was started with a key.
fn authorize(app: &App, parts: &Parts) -> Result<(), MessagesError> {
    let Some(key) = &app.api_key else {
        return Ok(());
    };
    let given = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(MessagesError::new(
            StatusCode::UNAUTHORIZED,
            "invalid x-api-key",
        ))
    }
}

/// The fields of a request the mock answers from.
struct Request<'a> {
    model: &'a str,
    max_tokens: u32,
    stream: bool,
    system: Option<&'a Value>,
    messages: &'a [Value],
    tools: &'a [Value],
    tool_choice: Option<&'a Value>,
}

struct Tool<'a> {
    name: &'a str,
    schema: Option<&'a Value>,
}

impl<'a> Request<'a> {
    fn check(req: &'a Map<String, Value>, count_only: bool) -> Result<Self, MessagesError> {
        let model = match req.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.as_str(),
            _ => return Err(MessagesError::invalid("model: Field required")),
        };
        let max_tokens = match req.get("max_tokens") {
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
                _ => {
                    return Err(MessagesError::invalid(
                        "max_tokens: Input should be greater than or equal to 1",
                    ));
                }
            },
            None if count_only => 1,
            None => return Err(MessagesError::invalid("max_tokens: Field required")),
        };
        let messages = match req.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m.as_slice(),
            Some(Value::Array(_)) => {
                return Err(MessagesError::invalid(
                    "messages: at least one message is required",
                ));
            }
            _ => return Err(MessagesError::invalid("messages: Field required")),
        };
        for (i, m) in messages.iter().enumerate() {
            match m.get("role").and_then(Value::as_str) {
                Some("user" | "assistant") => {}
                _ => {
                    return Err(MessagesError::invalid(format!(
                        "messages.{i}.role: Input should be 'user' or 'assistant'"
                    )));
                }
            }
            if m.get("content").is_none() {
                return Err(MessagesError::invalid(format!(
                    "messages.{i}.content: Field required"
                )));
            }
        }
        let tools = match req.get("tools") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(t)) => t.as_slice(),
            Some(_) => {
                return Err(MessagesError::invalid(
                    "tools: Input should be a valid list",
                ));
            }
        };
        for (i, t) in tools.iter().enumerate() {
            if t.get("name").and_then(Value::as_str).is_none() {
                return Err(MessagesError::invalid(format!(
                    "tools.{i}.name: Field required"
                )));
            }
        }
        Ok(Request {
            model,
            max_tokens,
            stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
            system: req.get("system"),
            messages,
            tools,
            tool_choice: req.get("tool_choice"),
        })
    }

    /// The tool the answer calls and whether the call was forced, if it calls one.
    fn tool_call(&self) -> Option<(Tool<'a>, bool)> {
        let first = self.tools.first()?;
        let choice = self
            .tool_choice
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("auto");
        let answered = self.messages.last().is_some_and(|m| {
            m.get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| {
                    blocks
                        .iter()
                        .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                })
        });
        let tool = |t: &'a Value| Tool {
            name: t.get("name").and_then(Value::as_str).unwrap_or_default(),
            schema: t.get("input_schema"),
        };
        match choice {
            "none" => None,
            "tool" => {
                let name = self.tool_choice?.get("name")?.as_str()?;
                let named = self
                    .tools
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?;
                Some((tool(named), true))
            }
            "any" => Some((tool(first), true)),
            _ if answered => None,
            _ => Some((tool(first), false)),
        }
    }
}

/// Arguments that fit a JSON schema's properties: the mock's stand-in for a model's.
fn arguments(schema: Option<&Value>) -> Value {
    let mut args = Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, prop) in props {
            let value = match prop.get("type").and_then(Value::as_str) {
                Some("integer") => json!(42),
                Some("number") => json!(1.5),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => match prop
                    .get("enum")
                    .and_then(Value::as_array)
                    .and_then(|e| e.first())
                {
                    Some(first) => first.clone(),
                    None => json!(format!("mock {name}")),
                },
            };
            args.insert(name.clone(), value);
        }
    }
    Value::Object(args)
}

/// The prompt's tokens: all of them, and those up to the last `cache_control` mark (the
/// cached prefix: tools, then system, then messages, in Anthropic's cache order).
struct Prompt {
    total: u32,
    cached_prefix: Option<(u64, u32)>,
    seed: u64,
}

impl Prompt {
    fn of(req: &Request<'_>) -> Prompt {
        let mut walk = Walk::default();
        for tool in req.tools {
            walk.text(&tool.to_string());
            walk.mark(tool);
        }
        if let Some(system) = req.system {
            walk.content(system);
        }
        for m in req.messages {
            walk.tokens += 4;
            if let Some(content) = m.get("content") {
                walk.content(content);
            }
        }
        Prompt {
            total: walk.tokens.max(1),
            cached_prefix: walk.marked,
            seed: walk.hash.finish(),
        }
    }
}

#[derive(Default)]
struct Walk {
    tokens: u32,
    hash: text::Fnv,
    /// (hash, tokens) of the prefix up to the last block marked `cache_control`.
    marked: Option<(u64, u32)>,
}

impl Walk {
    fn text(&mut self, s: &str) {
        self.tokens += text::text_tokens(s);
        self.hash.write(s.as_bytes());
    }

    fn mark(&mut self, block: &Value) {
        if block.get("cache_control").is_some_and(|c| !c.is_null()) {
            self.marked = Some((self.hash.finish(), self.tokens));
        }
    }

    fn content(&mut self, content: &Value) {
        match content {
            Value::String(s) => self.text(s),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            self.text(
                                block
                                    .get("text")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default(),
                            );
                        }
                        Some("tool_result") => match block.get("content") {
                            Some(inner) => self.content(inner),
                            None => self.tokens += 1,
                        },
                        Some("tool_use") => {
                            self.text(
                                block
                                    .get("name")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default(),
                            );
                            self.text(
                                &block.get("input").map(Value::to_string).unwrap_or_default(),
                            );
                        }
                        // Images and documents: a flat cost, as their size is not text.
                        _ => self.tokens += 85,
                    }
                    self.mark(block);
                }
            }
            _ => {}
        }
    }
}

struct ToolUse {
    id: String,
    name: String,
    input: Value,
}

struct Answer<'a> {
    id: String,
    model: &'a str,
    input_tokens: u32,
    cache_read: u32,
    cache_write: u32,
    text_tokens: u32,
    tool_use: Option<ToolUse>,
    output_tokens: u32,
    stop_reason: &'static str,
    seed: u64,
}

impl Answer<'_> {
    fn usage(&self, output_tokens: u32) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    fn message(&self, text: &str) -> Value {
        let mut content = Vec::new();
        if self.text_tokens > 0 {
            content.push(json!({ "type": "text", "text": text }));
        }
        if let Some(t) = &self.tool_use {
            content
                .push(json!({ "type": "tool_use", "id": t.id, "name": t.name, "input": t.input }));
        }
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": null,
            "usage": self.usage(self.output_tokens),
        })
    }

    fn stream_plan(&self) -> StreamPlan {
        let event =
            |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
        let mut start = self.message("");
        start["content"] = json!([]);
        start["stop_reason"] = Value::Null;
        start["usage"] = self.usage(1);
        let mut head = vec![event(
            "message_start",
            json!({ "type": "message_start", "message": start }),
        )];
        let mut tail = Vec::new();
        let mut index = 0;
        if self.text_tokens > 0 {
            head.push(event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            ));
            tail.push(event(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 0 }),
            ));
            index = 1;
        }
        head.push(event("ping", json!({ "type": "ping" })));
        if let Some(t) = &self.tool_use {
            tail.push(event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": index,
                        "content_block": { "type": "tool_use", "id": t.id, "name": t.name, "input": {} } }),
            ));
            // The arguments arrive in pieces, split anywhere (mid-key, mid-string).
            let args = t.input.to_string();
            let mut rest = args.as_str();
            while !rest.is_empty() {
                let mut cut = rest.len().min(7);
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let (piece, after) = rest.split_at(cut);
                tail.push(event(
                    "content_block_delta",
                    json!({ "type": "content_block_delta", "index": index,
                            "delta": { "type": "input_json_delta", "partial_json": piece } }),
                ));
                rest = after;
            }
            tail.push(event(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }),
            ));
        }
        tail.push(event(
            "message_delta",
            json!({ "type": "message_delta",
                    "delta": { "stop_reason": self.stop_reason, "stop_sequence": null },
                    "usage": { "output_tokens": self.output_tokens } }),
        ));
        tail.push(event("message_stop", json!({ "type": "message_stop" })));
        StreamPlan {
            head,
            template: TokenTemplate {
                prefix: "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":".into(),
                seq_base: None,
                after_seq: String::new(),
                suffix: "}}\n\n".into(),
            },
            tail,
            seed: self.seed,
            tokens: self.text_tokens,
        }
    }
}
