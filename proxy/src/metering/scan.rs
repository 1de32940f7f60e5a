//! Watching a response for its usage as it passes: an event stream is scanned event by
//! event (and the usage event the gateway asked for on the client's behalf taken out), a
//! JSON answer through a bounded window. Nothing is held back — except an Anthropic
//! deployment's answer to a chat completion, which is translated: a stream event by event,
//! a JSON answer or an error once whole.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use tollgate_core::{
    anthropic::{self, stream::StreamTranslator},
    sse::SseScanner,
    usage::{JsonUsageWindow, Usage},
};

/// The current attempt's answer comes from an Anthropic deployment and is translated.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The model named in the translated answer.
    pub model: String,
    /// The client asked for the usage chunk.
    pub include_usage: bool,
}

/// An Anthropic JSON answer (or error) is held until whole; past this it is not translated.
const MAX_TRANSLATED_BODY: usize = 32 << 20;

/// What the response scan has seen of one request's answer.
#[derive(Default)]
pub struct ResponseWatch {
    scan: ResponseScan,
    /// The gateway asked the upstream for stream usage the client did not ask for, and
    /// removes that event from the stream.
    pub strip_usage: bool,
    /// Response body bytes that passed.
    pub bytes: u64,
    /// The answer is an event stream.
    pub streamed: bool,
    /// The upstream answered with a success status.
    pub upstream_ok: bool,
    /// The upstream's status, as passed to the client (0 before it answered).
    pub status: u16,
    /// Set per attempt when its deployment is Anthropic's.
    pub translate: Option<Translation>,
    /// The request came in on Anthropic's API: the answer passes as it is, its usage read
    /// from Anthropic's events.
    pub anthropic_usage: bool,
    /// Stream events with generated text, kept when the scan ends.
    content_events: u64,
}

/// How the response body is watched for usage as it passes.
#[derive(Default)]
enum ResponseScan {
    #[default]
    None,
    Stream(Box<SseScanner>),
    /// A JSON body, watched through a bounded window for its `usage`.
    Json(Box<JsonUsageWindow>),
    /// Anthropic's event stream, translated as it passes.
    AnthropicStream(Box<StreamTranslator>),
    /// Anthropic's event stream passed as it is, read for its usage.
    AnthropicWatch(Box<StreamTranslator>),
    /// Anthropic's JSON answer (a message, or an error with the upstream's status), held
    /// until whole.
    AnthropicBody {
        body: Vec<u8>,
        error_status: Option<u16>,
        model: String,
        usage: Option<Usage>,
    },
    Done(Option<Usage>),
}

impl ResponseWatch {
    /// Chooses how to watch the body from the upstream's response head.
    pub fn start(&mut self, response: &mut ResponseHeader) {
        self.upstream_ok = response.status.is_success();
        self.status = response.status.as_u16();
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if let Some(translation) = self.translate.clone() {
            self.start_translated(
                response,
                content_type.starts_with(b"text/event-stream"),
                translation,
            );
            return;
        }
        if self.anthropic_usage
            && response.status.is_success()
            && content_type.starts_with(b"text/event-stream")
        {
            self.streamed = true;
            self.scan = ResponseScan::AnthropicWatch(Box::new(StreamTranslator::watcher()));
            return;
        }
        self.scan = if content_type.starts_with(b"text/event-stream") {
            if self.strip_usage {
                // Events are removed: the upstream's length, if any, no longer holds.
                response.remove_header(&http::header::CONTENT_LENGTH);
            }
            self.streamed = true;
            ResponseScan::Stream(Box::default())
        } else if response.status.is_success() && content_type.starts_with(b"application/json") {
            ResponseScan::Json(Box::default())
        } else {
            ResponseScan::None
        };
    }

    fn start_translated(&mut self, response: &mut ResponseHeader, stream: bool, t: Translation) {
        // The body changes: its length no longer holds, and it goes chunked (without a
        // length, an HTTP/1.1 body would end only with the connection).
        response.remove_header(&http::header::CONTENT_LENGTH);
        let _ = response.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if stream && response.status.is_success() {
            self.streamed = true;
            self.scan = ResponseScan::AnthropicStream(Box::new(StreamTranslator::new(
                &t.model,
                created,
                t.include_usage,
            )));
            return;
        }
        let error_status = (!response.status.is_success()).then_some(self.status);
        if let Some(upstream) = error_status {
            // The status an OpenAI SDK maps right (529 overloaded → 429).
            let status = anthropic::errors::status(upstream);
            if let Ok(status) = http::StatusCode::from_u16(status) {
                let _ = response.set_status(status);
            }
        }
        let _ = response.insert_header(http::header::CONTENT_TYPE, "application/json");
        self.scan = ResponseScan::AnthropicBody {
            body: Vec::new(),
            error_status,
            model: t.model,
            usage: None,
        };
    }

    /// Sees a chunk on its way to the client.
    pub fn pass(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if matches!(
            self.scan,
            ResponseScan::AnthropicStream(_) | ResponseScan::AnthropicBody { .. }
        ) {
            self.pass_translated(body, end_of_stream);
            return;
        }
        if let Some(chunk) = body.as_ref().filter(|c| !c.is_empty()) {
            self.bytes += chunk.len() as u64;
            match &mut self.scan {
                ResponseScan::Stream(scanner) if self.strip_usage => {
                    *body = Some(Bytes::from(scanner.filter_usage_chunk(chunk)));
                }
                ResponseScan::Stream(scanner) => scanner.feed(chunk),
                ResponseScan::Json(window) => window.feed(chunk),
                ResponseScan::AnthropicWatch(watch) => {
                    watch.push(chunk);
                }
                _ => {}
            }
        }
        if end_of_stream {
            if let ResponseScan::Stream(scanner) = &mut self.scan
                && self.strip_usage
            {
                let rest = scanner.take_pending();
                if !rest.is_empty() {
                    let mut out = body.take().map(Vec::from).unwrap_or_default();
                    out.extend_from_slice(&rest);
                    *body = Some(Bytes::from(out));
                }
            }
            self.content_events = self.scan_content_events();
            self.scan = ResponseScan::Done(self.usage());
        }
    }

    fn pass_translated(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let chunk = body.take().unwrap_or_default();
        self.bytes += chunk.len() as u64;
        match &mut self.scan {
            ResponseScan::AnthropicStream(t) => {
                let out = t.push(&chunk);
                *body = (!out.is_empty()).then(|| Bytes::from(out));
                if end_of_stream {
                    let usage = t.usage();
                    let seen = t.completed() || usage.output_tokens > 0;
                    self.scan = ResponseScan::Done(seen.then_some(Usage::from(usage)));
                }
            }
            ResponseScan::AnthropicBody {
                body: held,
                error_status,
                model,
                usage,
            } => {
                if held.len() + chunk.len() <= MAX_TRANSLATED_BODY {
                    held.extend_from_slice(&chunk);
                }
                if !end_of_stream {
                    return;
                }
                let out = match error_status {
                    Some(status) => anthropic::errors::translate(*status, held).1,
                    None => {
                        let created = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        match anthropic::response::translate(held, model, created) {
                            Some((translated, u)) => {
                                *usage = Some(Usage::from(u));
                                Bytes::from(translated)
                            }
                            None => anthropic::errors::translate(502, held).1,
                        }
                    }
                };
                let usage = *usage;
                *body = Some(out);
                self.scan = ResponseScan::Done(usage);
            }
            _ => {}
        }
    }

    /// Whether the answer is a stream still being scanned.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self.scan,
            ResponseScan::Stream(_)
                | ResponseScan::AnthropicStream(_)
                | ResponseScan::AnthropicWatch(_)
        )
    }

    /// Whether an error event can still be added to the stream: not when the upstream broke
    /// off mid-event (it would merge into the unfinished line).
    pub fn between_events(&self) -> bool {
        matches!(&self.scan, ResponseScan::Stream(scanner) if scanner.pending_len() == 0)
    }

    /// Stream events that carried generated text.
    pub fn content_events(&self) -> u64 {
        self.content_events.max(self.scan_content_events())
    }

    fn scan_content_events(&self) -> u64 {
        match &self.scan {
            ResponseScan::Stream(scanner) => scanner.content_events(),
            _ => 0,
        }
    }

    /// The usage the upstream reported, as far as it has been seen.
    pub fn usage(&self) -> Option<Usage> {
        match &self.scan {
            ResponseScan::None => None,
            ResponseScan::AnthropicStream(t) | ResponseScan::AnthropicWatch(t) => {
                let u = t.usage();
                (u.output_tokens > 0).then_some(Usage::from(u))
            }
            ResponseScan::AnthropicBody { usage, .. } => *usage,
            ResponseScan::Stream(scanner) => scanner.usage(),
            ResponseScan::Json(window) => window.usage(),
            ResponseScan::Done(usage) => *usage,
        }
    }
}
