//! A chat completion request as a Messages request:
//! - `system` and `developer` messages → `system` text blocks, in order;
//! - `user`, `assistant` and `tool` messages → alternating turns, consecutive ones of one
//!   role merged; text and image parts (URL or base64 data URL) → blocks; an assistant's
//!   `tool_calls` → `tool_use` blocks; `tool` messages → `tool_result` blocks in a user turn;
//! - `max_completion_tokens` / `max_tokens` (Anthropic requires one: the deployment's default
//!   when absent), `stop` → `stop_sequences`, `temperature` (0 to 1 at Anthropic), `top_p`,
//!   `stream`, `user` → `metadata.user_id`;
//! - `tools` (functions) → `tools` with `input_schema`; `tool_choice` `auto` / `none` /
//!   `required` (→ `any`) / a named function (→ `tool`); `parallel_tool_calls: false` →
//!   `disable_parallel_tool_use`.
//!
//! Anything else that would change the answer (`n` > 1, `logprobs`, penalties, `seed`,
//! `response_format` JSON, audio, …) is refused naming the parameter, unless the deployment
//! drops what it cannot send.

use serde_json::{Map, Value, json};

/// How the deployment translates.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The model name Anthropic knows.
    pub model: &'a str,
    /// `max_tokens` when the client sets none.
    pub default_max_tokens: u64,
    /// Drop parameters Anthropic cannot take instead of refusing the request.
    pub drop_unsupported: bool,
}

/// A request that cannot be translated: the parameter at fault and why (a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub param: String,
    pub message: String,
}

impl Refusal {
    fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// The translated request and what the answer's translation needs to know of the original.
#[derive(Debug, Clone)]
pub struct Translated {
    pub body: Vec<u8>,
    pub stream: bool,
    /// `stream_options.include_usage`: the client wants the final usage chunk.
    pub include_usage: bool,
}

pub fn translate(body: &[u8], opts: &Options<'_>) -> Result<Translated, Refusal> {
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| Refusal::new("", format!("the request body is not a JSON object: {e}")))?;
    let mut out = Map::new();
    out.insert("model".into(), json!(opts.model));
    let mut stream = false;
    let mut include_usage = false;
    let mut parallel_tools = true;
    let mut tool_choice = None;
    for (key, value) in &request {
        match key.as_str() {
            "model" => {}
            "messages" => {
                let (system, messages) = messages(value)?;
                if !system.is_empty() {
                    out.insert("system".into(), Value::Array(system));
                }
                out.insert("messages".into(), Value::Array(messages));
            }
            "max_tokens" | "max_completion_tokens" if value.is_null() => {}
            "max_tokens" | "max_completion_tokens" => {
                let n = value.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                    Refusal::new(key, format!("'{key}' must be a positive integer"))
                })?;
                // max_completion_tokens wins when both are set, as at OpenAI.
                if key == "max_completion_tokens" || !request.contains_key("max_completion_tokens")
                {
                    out.insert("max_tokens".into(), json!(n));
                }
            }
            "stop" => match value {
                Value::Null => {}
                Value::String(s) => {
                    out.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(list) if list.iter().all(Value::is_string) => {
                    out.insert("stop_sequences".into(), Value::Array(list.clone()));
                }
                _ => {
                    return Err(Refusal::new(
                        "stop",
                        "'stop' must be a string or a list of strings",
                    ));
                }
            },
            "temperature" => match value.as_f64() {
                None if value.is_null() => {}
                Some(t) if (0.0..=1.0).contains(&t) => {
                    out.insert("temperature".into(), value.clone());
                }
                _ => {
                    return Err(Refusal::new(
                        "temperature",
                        "'temperature' must be between 0 and 1 for an Anthropic model",
                    ));
                }
            },
            "top_p" if !value.is_null() => {
                out.insert("top_p".into(), value.clone());
            }
            "stream" => stream = value.as_bool().unwrap_or(false),
            "user" => {
                if let Some(user) = value.as_str() {
                    out.insert("metadata".into(), json!({ "user_id": user }));
                }
            }
            "tools" if !value.is_null() => {
                out.insert("tools".into(), tools(value)?);
            }
            "tool_choice" if !value.is_null() => tool_choice = Some(choice(value)?),
            "parallel_tool_calls" => parallel_tools = value.as_bool().unwrap_or(true),
            "n" if value.is_null() || value.as_u64() == Some(1) => {}
            "response_format" if value.is_null() || value.get("type") == Some(&json!("text")) => {}
            "logprobs" if value.is_null() || value == &json!(false) => {}
            "store" if value.is_null() || value == &json!(false) => {}
            "stream_options" => {
                include_usage = value
                    .get("include_usage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            }
            // OpenAI's tags for stored completions: nothing Anthropic is asked changes.
            "metadata" => {}
            "top_p" | "tools" | "tool_choice" => {}
            _ if opts.drop_unsupported => {}
            other => {
                return Err(Refusal::new(
                    other,
                    format!("'{other}' is not supported by this model's Anthropic deployment"),
                ));
            }
        }
    }
    if !out.contains_key("messages") {
        return Err(Refusal::new("messages", "'messages' is required"));
    }
    if !out.contains_key("max_tokens") {
        out.insert("max_tokens".into(), json!(opts.default_max_tokens));
    }
    if !parallel_tools {
        let choice = tool_choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if let Some(c) = choice.as_object_mut() {
            c.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    let body = serde_json::to_vec(&out).map_err(|e| Refusal::new("", e.to_string()))?;
    Ok(Translated {
        body,
        stream,
        include_usage,
    })
}

/// `(system blocks, turns)`.
fn messages(value: &Value) -> Result<(Vec<Value>, Vec<Value>), Refusal> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Refusal::new("messages", "'messages' must be a non-empty list"))?;
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, message) in list.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::new(at("role"), "every message needs a 'role'"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(content, &at("content"))?);
                continue;
            }
            "user" => ("user", user_blocks(content, &at("content"))?),
            "assistant" => {
                let mut blocks = text_blocks(content, &at("content"))?;
                if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    blocks.extend(tool_uses(calls, &at("tool_calls"))?);
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Refusal::new(at("tool_call_id"), "a tool message needs 'tool_call_id'")
                    })?;
                let result = text_blocks(content, &at("content"))?;
                (
                    "user",
                    vec![json!({ "type": "tool_result", "tool_use_id": id, "content": result })],
                )
            }
            other => {
                return Err(Refusal::new(
                    at("role"),
                    format!("role '{other}' cannot be sent to an Anthropic model"),
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants the roles to alternate: a turn of the same role as the last one
        // is merged into it.
        match turns.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["content"].as_array_mut() {
                    existing.extend(blocks);
                }
            }
            _ => turns.push(json!({ "role": role, "content": blocks })),
        }
    }
    if turns.is_empty() {
        return Err(Refusal::new(
            "messages",
            "'messages' holds no user or assistant content",
        ));
    }
    Ok((system, turns))
}

/// Text content (a string, or text parts) as text blocks; empty text is left out
/// (Anthropic refuses empty blocks).
fn text_blocks(content: &Value, at: &str) -> Result<Vec<Value>, Refusal> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({ "type": "text", "text": s })]),
        Value::Array(parts) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = part.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !text.is_empty() {
                            blocks.push(json!({ "type": "text", "text": text }));
                        }
                    }
                    // An assistant's refusal is text the model wrote.
                    Some("refusal") => {
                        if let Some(text) = part.get("refusal").and_then(Value::as_str) {
                            blocks.push(json!({ "type": "text", "text": text }));
                        }
                    }
                    other => {
                        return Err(Refusal::new(
                            format!("{at}[{j}].type"),
                            format!(
                                "content part '{}' is not allowed here",
                                other.unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
            Ok(blocks)
        }
        _ => Err(Refusal::new(
            at,
            "content must be a string or a list of parts",
        )),
    }
}

/// A user's content: text and images.
fn user_blocks(content: &Value, at: &str) -> Result<Vec<Value>, Refusal> {
    let Value::Array(parts) = content else {
        return text_blocks(content, at);
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        if part.get("type").and_then(Value::as_str) != Some("image_url") {
            blocks.extend(text_blocks(&Value::Array(vec![part.clone()]), at).map_err(
                |mut r| {
                    r.param = format!("{at}[{j}].type");
                    r
                },
            )?);
            continue;
        }
        let url = part
            .get("image_url")
            .and_then(|i| i.get("url"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Refusal::new(
                    format!("{at}[{j}].image_url.url"),
                    "an image part needs a url",
                )
            })?;
        blocks.push(image(url).ok_or_else(|| {
            Refusal::new(
                format!("{at}[{j}].image_url.url"),
                "an image must be an http(s) URL or a base64 data URL",
            )
        })?);
    }
    Ok(blocks)
}

fn image(url: &str) -> Option<Value> {
    if let Some(data) = url.strip_prefix("data:") {
        let (media_type, rest) = data.split_once(';')?;
        let payload = rest.strip_prefix("base64,")?;
        return Some(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": payload },
        }));
    }
    (url.starts_with("https://") || url.starts_with("http://"))
        .then(|| json!({ "type": "image", "source": { "type": "url", "url": url } }))
}

/// An assistant's `tool_calls` as `tool_use` blocks.
fn tool_uses(calls: &Value, at: &str) -> Result<Vec<Value>, Refusal> {
    let list = calls
        .as_array()
        .ok_or_else(|| Refusal::new(at, "'tool_calls' must be a list"))?;
    list.iter()
        .enumerate()
        .map(|(j, call)| {
            let function = call.get("function").unwrap_or(&Value::Null);
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Refusal::new(
                        format!("{at}[{j}].function.name"),
                        "a tool call needs a name",
                    )
                })?;
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let arguments = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|_| {
                    Refusal::new(
                        format!("{at}[{j}].function.arguments"),
                        "tool call arguments must be a JSON object",
                    )
                })?
            };
            Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
        })
        .collect()
}

fn tools(value: &Value) -> Result<Value, Refusal> {
    let list = value
        .as_array()
        .ok_or_else(|| Refusal::new("tools", "'tools' must be a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Refusal::new(
                format!("tools[{i}].type"),
                "only function tools can be sent to an Anthropic model",
            ));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Refusal::new(format!("tools[{i}].function.name"), "a tool needs a name")
            })?;
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        if let Some(d) = function.get("description").filter(|d| !d.is_null()) {
            t.insert("description".into(), d.clone());
        }
        let schema = function
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        t.insert("input_schema".into(), schema);
        out.push(Value::Object(t));
    }
    Ok(Value::Array(out))
}

fn choice(value: &Value) -> Result<Value, Refusal> {
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({ "type": "auto" })),
            "none" => Ok(json!({ "type": "none" })),
            "required" => Ok(json!({ "type": "any" })),
            other => Err(Refusal::new(
                "tool_choice",
                format!("unknown tool_choice '{other}'"),
            )),
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| json!({ "type": "tool", "name": name }))
            .ok_or_else(|| Refusal::new("tool_choice", "a named tool_choice needs function.name")),
        _ => Err(Refusal::new(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: Options<'static> = Options {
        model: "claude-haiku-4-5-20251001",
        default_max_tokens: 4096,
        drop_unsupported: false,
    };

    fn translated(request: Value) -> Value {
        let t = translate(request.to_string().as_bytes(), &OPTS).unwrap();
        serde_json::from_slice(&t.body).unwrap()
    }

    fn refused(request: Value) -> Refusal {
        translate(request.to_string().as_bytes(), &OPTS).unwrap_err()
    }

    #[test]
    fn each_feature_translates() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "a plain user message, the default max_tokens",
                json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 4096,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}),
            ),
            (
                "system and developer messages become the system prompt, in order",
                json!({"model": "m", "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                    {"role": "user", "content": "Hi"}]}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 4096,
                       "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}],
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}),
            ),
            (
                "consecutive turns of one role are merged",
                json!({"model": "m", "messages": [
                    {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                    {"role": "assistant", "content": "c"}]}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 4096, "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "c"}]}]}),
            ),
            (
                "images by URL and base64",
                json!({"model": "m", "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]}]}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 4096, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]}]}),
            ),
            (
                "tools, a tool call and its result",
                json!({"model": "m",
                       "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                       "tool_choice": "required",
                       "messages": [
                           {"role": "user", "content": "Paris?"},
                           {"role": "assistant", "content": null, "tool_calls": [
                               {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                           {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                           {"role": "user", "content": "Thanks"}]}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 4096,
                       "tools": [{"name": "get_weather", "description": "Weather",
                                  "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                       "tool_choice": {"type": "any"},
                       "messages": [
                           {"role": "user", "content": [{"type": "text", "text": "Paris?"}]},
                           {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                           {"role": "user", "content": [
                               {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                               {"type": "text", "text": "Thanks"}]}]}),
            ),
            (
                "a named tool_choice, no parallel calls, sampling, stop and user",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": {"type": "function", "function": {"name": "f"}},
                       "parallel_tool_calls": false, "temperature": 0.2, "top_p": 0.9,
                       "stop": "END", "user": "u-1", "max_completion_tokens": 77, "max_tokens": 5,
                       "stream": true, "stream_options": {"include_usage": true}, "n": 1}),
                json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 77,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                       "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}],
                       "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true},
                       "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"],
                       "metadata": {"user_id": "u-1"}, "stream": true}),
            ),
        ];
        for (what, request, expected) in cases {
            assert_eq!(translated(request), expected, "{what}");
        }
    }

    #[test]
    fn stream_flags_are_kept_for_the_answer() {
        let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "x"}]});
        let t = translate(body.to_string().as_bytes(), &OPTS).unwrap();
        assert!(t.stream && t.include_usage);
    }

    #[test]
    fn what_cannot_be_sent_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "x"}]);
        let cases: Vec<(Value, &str)> = vec![
            (json!({"model": "m", "messages": user, "n": 2}), "n"),
            (
                json!({"model": "m", "messages": user, "logprobs": true}),
                "logprobs",
            ),
            (
                json!({"model": "m", "messages": user, "frequency_penalty": 0.5}),
                "frequency_penalty",
            ),
            (json!({"model": "m", "messages": user, "seed": 7}), "seed"),
            (
                json!({"model": "m", "messages": user, "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"model": "m", "messages": user, "temperature": 1.5}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": user, "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": user, "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}),
                "messages[0].role",
            ),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m"}), "messages"),
        ];
        for (request, param) in cases {
            let r = refused(request.clone());
            assert_eq!(r.param, param, "{request} → {r:?}");
            assert!(!r.message.is_empty());
        }
    }

    #[test]
    fn a_deployment_may_drop_what_it_cannot_send() {
        let opts = Options {
            drop_unsupported: true,
            ..OPTS
        };
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "seed": 7, "frequency_penalty": 0.5});
        let t = translate(body.to_string().as_bytes(), &opts).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert!(v.get("seed").is_none() && v.get("frequency_penalty").is_none());
    }
}
