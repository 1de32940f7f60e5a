//! Anthropic's event stream as OpenAI `chat.completion.chunk` events, translated as the
//! bytes pass (chunks may split an event anywhere; only an unfinished event is held):
//!
//! | Anthropic | OpenAI |
//! | --- | --- |
//! | `message_start` | the role chunk (`{"role":"assistant","content":""}`); input usage read |
//! | `content_block_start` of `tool_use` | a `tool_calls` delta with the call's index, id and name |
//! | `content_block_delta` `text_delta` | a `content` delta |
//! | `content_block_delta` `input_json_delta` | a `tool_calls` delta with the argument piece |
//! | `message_delta` | the chunk with `finish_reason`; output usage read |
//! | `message_stop` | the usage chunk (`"choices":[]`) when asked for, then `data: [DONE]` |
//! | `error` | an `{"error":{…}}` event in OpenAI's shape |
//! | `ping`, `content_block_stop`, thinking deltas | nothing |
//!
//! Every chunk carries the message's id, `created` and the model the client asked for; tool
//! calls are numbered from 0 in the order their blocks start, as OpenAI numbers them.

use serde_json::{Value, json};

use super::{MessagesUsage, finish_reason};
use crate::sse::event_end;

/// An unfinished event larger than this is dropped: memory stays bounded.
const MAX_PENDING: usize = 1 << 20;

#[derive(Debug)]
pub struct StreamTranslator {
    pending: Vec<u8>,
    model: String,
    created: u64,
    include_usage: bool,
    id: String,
    usage: MessagesUsage,
    /// (content block index, tool call index) of each tool-use block.
    tools: Vec<(u64, usize)>,
    done: bool,
    failed: bool,
    /// Only read the usage (Anthropic's own API passes the stream on as it is): no OpenAI
    /// chunk is built.
    watch_only: bool,
}

impl StreamTranslator {
    /// A reader of an Anthropic stream's usage that translates nothing.
    pub fn watcher() -> Self {
        StreamTranslator {
            watch_only: true,
            ..StreamTranslator::new("", 0, false)
        }
    }

    /// `model` is the name the client asked for; `include_usage` its
    /// `stream_options.include_usage`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamTranslator {
            pending: Vec::new(),
            model: model.to_owned(),
            created,
            include_usage,
            id: String::new(),
            usage: MessagesUsage::default(),
            tools: Vec::new(),
            done: false,
            failed: false,
            watch_only: false,
        }
    }

    /// Feeds the upstream's next bytes; returns the client's (whole events only).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some((end, next)) = event_end(&buf[start..]) {
            self.event(&buf[start..start + end], &mut out);
            start += next;
        }
        let tail = buf.split_off(start);
        if tail.len() <= MAX_PENDING {
            self.pending = tail;
        }
        out
    }

    /// The usage read so far (whole once the stream completed).
    pub fn usage(&self) -> MessagesUsage {
        self.usage
    }

    /// `message_stop` arrived.
    pub fn completed(&self) -> bool {
        self.done
    }

    /// An `error` event arrived.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let Ok(text) = std::str::from_utf8(raw) else {
            return;
        };
        let mut data = String::new();
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        let Ok(event) = serde_json::from_str::<Value>(&data) else {
            return;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = event.get("message").unwrap_or(&Value::Null);
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(u) = message.get("usage") {
                    self.usage.update(u);
                }
                self.chunk(json!({ "role": "assistant", "content": "" }), None, out);
            }
            Some("content_block_start") => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !text.is_empty() {
                            self.chunk(json!({ "content": text }), None, out);
                        }
                    }
                    Some("tool_use") => {
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self.tools.len();
                        self.tools.push((index, call));
                        let delta = json!({ "tool_calls": [{
                            "index": call,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": { "name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": "" },
                        }]});
                        self.chunk(delta, None, out);
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !text.is_empty() {
                            self.chunk(json!({ "content": text }), None, out);
                        }
                    }
                    Some("input_json_delta") => {
                        let piece = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self
                            .tools
                            .iter()
                            .find(|(block, _)| *block == index)
                            .map(|(_, c)| *c);
                        if let (Some(call), false) = (call, piece.is_empty()) {
                            let delta = json!({ "tool_calls": [{ "index": call, "function": { "arguments": piece } }] });
                            self.chunk(delta, None, out);
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(u) = event.get("usage") {
                    self.usage.update(u);
                }
                let stop = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.chunk(json!({}), Some(finish_reason(stop)), out);
            }
            Some("message_stop") => {
                self.done = true;
                if self.watch_only {
                    return;
                }
                if self.include_usage {
                    let usage = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": self.usage.openai(),
                    });
                    push_event(out, &usage);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Some("error") => {
                self.failed = true;
                if self.watch_only {
                    return;
                }
                let error = event.get("error").unwrap_or(&Value::Null);
                let body =
                    super::errors::translate(500, json!({ "error": error }).to_string().as_bytes())
                        .1;
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
            }
            _ => {}
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        if self.watch_only {
            return;
        }
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        push_event(out, &chunk);
    }
}

fn push_event(out: &mut Vec<u8>, event: &Value) {
    out.extend_from_slice(b"data: ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text, then a tool call whose arguments arrive in pieces, as Anthropic streams them.
    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":90,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\r\n\r\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Pa\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":25}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn events(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").unwrap();
                if data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    fn run(include_usage: bool, pieces: &[&[u8]]) -> (Vec<u8>, StreamTranslator) {
        let mut t = StreamTranslator::new("claude", 1_700_000_000, include_usage);
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(t.push(piece));
        }
        (out, t)
    }

    #[test]
    fn every_event_type_translates() {
        let (out, t) = run(true, &[STREAM.as_bytes()]);
        let got = events(&out);
        let delta = |e: &Value| e["choices"][0]["delta"].clone();
        assert_eq!(got.len(), 9, "{got:#?}");
        assert_eq!(delta(&got[0]), json!({"role": "assistant", "content": ""}));
        assert_eq!(delta(&got[1]), json!({"content": "Let me "}));
        assert_eq!(delta(&got[2]), json!({"content": "check."}));
        assert_eq!(
            delta(&got[3]),
            json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            delta(&got[4]),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}]})
        );
        assert_eq!(
            delta(&got[5]),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]})
        );
        assert_eq!(got[6]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(got[7]["choices"], json!([]));
        assert_eq!(
            got[7]["usage"],
            json!({"prompt_tokens": 100, "completion_tokens": 25, "total_tokens": 125,
                   "prompt_tokens_details": {"cached_tokens": 90}})
        );
        assert_eq!(got[8], json!("[DONE]"));
        for chunk in &got[..8] {
            assert_eq!(chunk["id"], "msg_1");
            assert_eq!(chunk["model"], "claude");
            assert_eq!(chunk["created"], 1_700_000_000);
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        for chunk in &got[..7] {
            assert!(chunk["usage"].is_null() && chunk.get("usage").is_some());
        }
        assert!(t.completed() && !t.failed());
        assert_eq!(t.usage().output_tokens, 25);
        assert_eq!(t.usage().prompt_tokens(), 100);
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk_or_field() {
        let (out, t) = run(false, &[STREAM.as_bytes()]);
        let got = events(&out);
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|e| e.get("usage").is_none()));
        // Read for metering all the same.
        assert_eq!(t.usage().output_tokens, 25);
    }

    #[test]
    fn a_split_anywhere_translates_the_same() {
        let whole = run(true, &[STREAM.as_bytes()]).0;
        let bytes = STREAM.as_bytes();
        for at in 0..=bytes.len() {
            let (out, _) = run(true, &[&bytes[..at], &bytes[at..]]);
            assert_eq!(out, whole, "split at {at}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(true, &singles).0, whole);
    }

    #[test]
    fn a_watcher_reads_the_usage_and_builds_nothing() {
        let mut w = StreamTranslator::watcher();
        assert!(w.push(STREAM.as_bytes()).is_empty());
        assert!(w.completed());
        assert_eq!(w.usage(), run(true, &[STREAM.as_bytes()]).1.usage());
    }

    #[test]
    fn a_second_tool_call_gets_the_next_index() {
        let stream = concat!(
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"f\"}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"b\",\"name\":\"g\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        );
        let got = events(&run(false, &[stream.as_bytes()]).0);
        assert_eq!(got[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(got[3]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    }

    #[test]
    fn an_error_event_becomes_an_openai_error_event() {
        let stream = concat!(
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let (out, t) = run(false, &[stream.as_bytes()]);
        let got = events(&out);
        assert_eq!(got[0]["error"]["message"], "Overloaded");
        assert_eq!(got[0]["error"]["type"], "server_overloaded");
        assert!(t.failed() && !t.completed());
    }
}
