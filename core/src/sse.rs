//! Incremental scanner for `text/event-stream` bodies. It sees each chunk once as it
//! passes through, keeps only an unfinished event's bytes, and parses JSON only for the
//! rare event that carries a `usage` object or an error.

use std::sync::LazyLock;

use memchr::memmem::Finder;

pub use crate::usage::Usage;
use crate::usage::{USAGE_KEY, parse_usage};

/// The keys whose non-empty string value is generated text. Searchers are built once:
/// building one costs more than searching an event with it.
static TEXT_KEYS: LazyLock<[Finder<'static>; 3]> =
    LazyLock::new(|| [&b"\"content\":\""[..], b"\"text\":\"", b"\"delta\":\""].map(Finder::new));
static CHOICES_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));

/// An unfinished event larger than this is dropped rather than buffered: memory stays
/// bounded whatever the upstream sends.
const MAX_PENDING: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseScanner {
    pending: Vec<u8>,
    overflowed: bool,
    events: u64,
    done: bool,
    error: bool,
    usage: Option<Usage>,
    /// Events whose data carries generated text (a delta with content): about one token
    /// each, the estimate of a stream that ends without usage.
    content_events: u64,
    /// Set by `filter`: the event just scanned is a usage-only chunk to drop.
    usage_only: bool,
}

impl SseScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk and returns the bytes to forward: every complete event except
    /// the usage-only chunk (`"choices": []` with a `usage`) the gateway asked for on the
    /// client's behalf. An unfinished event is held until its end arrives — it is of no use
    /// to the client before that — so nothing else is delayed.
    pub fn filter_usage_chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut start = 0;
        while let Some((end, next)) = event_end(&buf[start..]) {
            self.usage_only = false;
            self.event(&buf[start..start + end]);
            if !self.usage_only {
                out.extend_from_slice(&buf[start..start + next]);
            }
            start += next;
        }
        let tail = buf.split_off(start);
        if tail.len() > MAX_PENDING {
            // Not an event this gateway understands: pass it on rather than hold it.
            self.overflowed = true;
            out.extend_from_slice(&tail);
        } else {
            self.pending = tail;
        }
        out
    }

    /// What `filter_usage_chunk` still holds, for the end of the stream.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pending.is_empty() {
            let used = self.scan(chunk);
            self.keep(&chunk[used..]);
        } else {
            // Join the tail of the previous chunk with this one; only the unfinished part
            // (usually a fraction of one event) is ever copied.
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            let used = self.scan(&joined);
            let tail = joined.split_off(used);
            self.keep(&tail);
        }
    }

    fn keep(&mut self, tail: &[u8]) {
        if tail.len() > MAX_PENDING {
            self.overflowed = true;
            self.pending.clear();
        } else {
            self.pending.clear();
            self.pending.extend_from_slice(tail);
        }
    }

    /// Handles every complete event in `buf`; returns how many bytes it consumed.
    fn scan(&mut self, buf: &[u8]) -> usize {
        let mut start = 0;
        while let Some((end, next)) = event_end(&buf[start..]) {
            self.event(&buf[start..start + end]);
            start += next;
        }
        start
    }

    fn event(&mut self, event: &[u8]) {
        let mut has_data = false;
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                has_data = true;
                let data = data.strip_prefix(b" ").unwrap_or(data);
                self.data(data);
            } else if line == b"event: error" || line == b"event:error" {
                self.error = true;
            }
        }
        if has_data {
            self.events += 1;
        }
    }

    fn data(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if data.starts_with(b"{\"error\"") {
            self.error = true;
        }
        if TEXT_KEYS.iter().any(|key| has_text(data, key)) {
            self.content_events += 1;
        }
        if let Some(at) = USAGE_KEY.find(data) {
            let after = &data[at + 7..];
            let value = after
                .iter()
                .position(|b| !b.is_ascii_whitespace() && *b != b':')
                .map(|i| after[i]);
            if value == Some(b'{')
                && let Some(usage) = parse_usage(data)
            {
                self.usage = Some(usage);
                self.usage_only = has_no_choices(data);
            }
        }
    }

    /// Events that carried generated text so far.
    pub fn content_events(&self) -> u64 {
        self.content_events
    }

    /// Number of events with data seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }
    /// Whether the stream ended with `data: [DONE]`.
    pub fn done(&self) -> bool {
        self.done
    }
    /// Whether the upstream sent an error event.
    pub fn saw_error(&self) -> bool {
        self.error
    }
    /// The last usage object the upstream reported.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
    /// Whether an oversized event was dropped unparsed.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
    /// Bytes currently held for an unfinished event.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Whether a chunk's `choices` is an empty array (the usage-only final chunk).
fn has_no_choices(data: &[u8]) -> bool {
    let Some(at) = CHOICES_KEY.find(data) else {
        return false;
    };
    let mut rest = data[at + 9..]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace());
    rest.next() == Some(b':') && rest.next() == Some(b'[') && rest.next() == Some(b']')
}

/// Finds the blank line ending the first event: (end of event, start of the next).
pub(crate) fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let i = from + i;
        match buf.get(i + 1) {
            Some(b'\n') => return Some((i, i + 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
            _ => from = i + 1,
        }
    }
    None
}

/// Whether `key` (ending in an opening quote) is followed by a non-empty string: the role
/// chunk's `"content":""` carries no token.
fn has_text(data: &[u8], key: &Finder<'_>) -> bool {
    let len = key.needle().len();
    key.find_iter(data)
        .any(|at| data.get(at + len).is_some_and(|b| *b != b'"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn finds_usage_and_done_in_one_chunk() {
        let mut s = SseScanner::new();
        s.feed(STREAM.as_bytes());
        assert_eq!(s.events(), 5);
        assert_eq!(s.content_events(), 2, "the role chunk carries no token");
        assert!(s.done());
        assert_eq!(
            s.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 2,
                ..Default::default()
            })
        );
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn same_result_for_every_split_point() {
        let bytes = STREAM.as_bytes();
        for cut in 0..bytes.len() {
            for cut2 in cut..bytes.len() {
                let mut s = SseScanner::new();
                s.feed(&bytes[..cut]);
                s.feed(&bytes[cut..cut2]);
                s.feed(&bytes[cut2..]);
                assert_eq!(s.events(), 5, "cut at {cut}/{cut2}");
                assert_eq!(s.content_events(), 2);
                assert!(s.done());
                assert_eq!(s.usage().map(|u| u.completion_tokens), Some(2));
            }
        }
    }

    #[test]
    fn crlf_events_errors_and_responses_api() {
        let mut s = SseScanner::new();
        s.feed(b"event: response.completed\r\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":9}}}\r\n\r\n");
        assert_eq!(
            s.usage(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 9,
                ..Default::default()
            })
        );
        s.feed(b"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\n");
        assert!(s.saw_error());
        assert!(!s.done());
    }

    #[test]
    fn the_usage_chunk_is_stripped_at_every_split_point() {
        let bytes = STREAM.as_bytes();
        let expected = STREAM.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14}}\n\n",
            "",
        );
        for cut in 0..bytes.len() {
            let mut s = SseScanner::new();
            let mut out = s.filter_usage_chunk(&bytes[..cut]);
            out.extend(s.filter_usage_chunk(&bytes[cut..]));
            out.extend(s.take_pending());
            assert_eq!(String::from_utf8(out).unwrap(), expected, "cut at {cut}");
            assert_eq!(s.usage().map(|u| u.prompt_tokens), Some(12));
            assert_eq!(s.content_events(), 2);
            assert!(s.done());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = SseScanner::new();
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"token\"}}]}\n\n";
        for _ in 0..10_000 {
            s.feed(event);
            s.feed(&event[..10]);
            s.feed(&event[10..]);
        }
        assert_eq!(s.events(), 20_000);
        assert!(s.pending_len() < event.len());
        let junk = vec![b'x'; MAX_PENDING + 10];
        s.feed(&junk);
        assert!(s.overflowed());
        assert_eq!(s.pending_len(), 0);
    }
}
