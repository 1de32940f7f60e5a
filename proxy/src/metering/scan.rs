//! Watching a response for its usage as it passes: an event stream is scanned event by
//! event (and the usage event the gateway asked for on the client's behalf taken out), a
//! JSON answer through a bounded window. Nothing is held back.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use tollgate_core::{
    sse::SseScanner,
    usage::{JsonUsageWindow, Usage},
};

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

    /// Sees a chunk on its way to the client.
    pub fn pass(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(chunk) = body.as_ref().filter(|c| !c.is_empty()) {
            self.bytes += chunk.len() as u64;
            match &mut self.scan {
                ResponseScan::Stream(scanner) if self.strip_usage => {
                    *body = Some(Bytes::from(scanner.filter_usage_chunk(chunk)));
                }
                ResponseScan::Stream(scanner) => scanner.feed(chunk),
                ResponseScan::Json(window) => window.feed(chunk),
                ResponseScan::None | ResponseScan::Done(_) => {}
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

    /// Whether the answer is a stream still being scanned.
    pub fn is_streaming(&self) -> bool {
        matches!(self.scan, ResponseScan::Stream(_))
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
            ResponseScan::Stream(scanner) => scanner.usage(),
            ResponseScan::Json(window) => window.usage(),
            ResponseScan::Done(usage) => *usage,
        }
    }
}
