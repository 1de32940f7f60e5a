//! Token usage as upstreams report it, read from a JSON body or an SSE event without
//! holding whole responses: a JSON body is watched through a bounded head-and-tail window.

use serde::Deserialize;

mod members;

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every input token, those read from or written to a prompt cache included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt, tokens read from Anthropic's prompt cache (priced apart when the
    /// model sets `cache_read_per_million`).
    pub cache_read_tokens: u64,
    /// Of the prompt, tokens written to Anthropic's prompt cache.
    pub cache_write_tokens: u64,
}

#[derive(Deserialize)]
struct UsageCarrier {
    usage: Option<UsageObject>,
    /// Responses API: `response.completed` nests usage in the response.
    response: Option<Box<UsageCarrier>>,
}

#[derive(Deserialize)]
struct UsageObject {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Anthropic counts prompt-cache writes and reads apart from `input_tokens`.
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl UsageObject {
    fn into_usage(self) -> Option<Usage> {
        let cached = self
            .cache_creation_input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0));
        Some(Usage {
            cache_read_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            prompt_tokens: self
                .prompt_tokens
                .or(self.input_tokens.map(|n| n.saturating_add(cached)))?,
            completion_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
        })
    }
}

/// Usage from a whole JSON document (a chat/completions chunk or a Responses API event).
/// The top-level members are walked and only `usage` (or `response`'s) deserialized; a
/// document the walk does not take on is deserialized whole, with the same outcome.
pub fn parse_usage(json: &[u8]) -> Option<Usage> {
    let Ok(found) = members::usage_members(json) else {
        return parse_whole(json);
    };
    let usage = match found.usage {
        Some(value) => serde_json::from_slice::<Option<UsageObject>>(value).ok()?,
        None => None,
    };
    match usage {
        Some(object) => object.into_usage(),
        None => {
            let response: UsageCarrier = serde_json::from_slice(found.response?).ok()?;
            response.usage?.into_usage()
        }
    }
}

/// [`parse_usage`] by deserializing the whole document.
fn parse_whole(json: &[u8]) -> Option<Usage> {
    let carrier: UsageCarrier = serde_json::from_slice(json).ok()?;
    match carrier.usage {
        Some(u) => u.into_usage(),
        None => carrier.response?.usage?.into_usage(),
    }
}

/// The `"usage"` key, its searcher built once (building one costs more than a search).
pub(crate) static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));

/// Usage from the last `"usage": {...}` object found in a fragment of JSON.
pub fn find_usage(fragment: &[u8]) -> Option<Usage> {
    let mut found = None;
    for at in USAGE_KEY.find_iter(fragment) {
        let after = &fragment[at + 7..];
        let Some(open) = after
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != b':')
        else {
            continue;
        };
        if after[open] != b'{' {
            continue;
        }
        if let Some(len) = object_len(&after[open..])
            && let Ok(object) = serde_json::from_slice::<UsageObject>(&after[open..open + len])
        {
            found = object.into_usage().or(found);
        }
    }
    found
}

/// Length of the JSON object starting at `text[0] == b'{'`, strings taken into account.
fn object_len(text: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Keeps the first and last `WINDOW` bytes of a JSON body as it streams past: OpenAI puts
/// `usage` last, some providers first, and neither needs the middle.
#[derive(Debug, Default)]
pub struct JsonUsageWindow {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: usize,
}

const WINDOW: usize = 16 * 1024;

impl JsonUsageWindow {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        let mut chunk = chunk;
        if self.head.len() < WINDOW {
            let take = chunk.len().min(WINDOW - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        if chunk.len() >= WINDOW {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - WINDOW..]);
        } else if !chunk.is_empty() {
            let excess = (self.tail.len() + chunk.len()).saturating_sub(WINDOW);
            self.tail.drain(..excess);
            self.tail.extend_from_slice(chunk);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        if self.tail.is_empty() {
            return parse_usage(&self.head).or_else(|| find_usage(&self.head));
        }
        if self.total == self.head.len() + self.tail.len() {
            // Nothing was skipped: a `usage` across the seam of head and tail is whole only
            // in the two together (a body of 16 to 32 KiB).
            let mut body = Vec::with_capacity(self.total);
            body.extend_from_slice(&self.head);
            body.extend_from_slice(&self.tail);
            return parse_usage(&body).or_else(|| find_usage(&body));
        }
        find_usage(&self.tail).or_else(|| find_usage(&self.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_across_the_seam_of_head_and_tail_is_found() {
        // A body of 16-32 KiB whose `usage` starts in the first 16 KiB and ends after it.
        let usage =
            r#""usage":{"prompt_tokens":100000,"completion_tokens":100000,"total_tokens":200000}}"#;
        let padding = "x".repeat(WINDOW - 40);
        let body = format!(r#"{{"choices":[{{"message":{{"content":"{padding}"}}}}],{usage}"#);
        assert!(body.len() > WINDOW && body.len() < 2 * WINDOW);
        let mut window = JsonUsageWindow::default();
        window.feed(body.as_bytes());
        assert_eq!(
            window.usage(),
            Some(Usage {
                prompt_tokens: 100_000,
                completion_tokens: 100_000,
                ..Default::default()
            })
        );
    }

    #[test]
    fn the_member_walk_reads_what_deserializing_the_whole_document_reads() {
        let docs: [&[u8]; 12] = [
            br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"usage\":{\"prompt_tokens\":99}} ]"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":null}"#,
            br#"{"choices":[],"usage":null}"#,
            br#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":4,"output_tokens":9}}}"#,
            br#"{"type":"response.completed","usage":null,"response":{"usage":{"input_tokens":4}}}"#,
            br#"{"response":null}"#,
            br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":3,"output_tokens":7}}"#,
            br#"{"usage":{"completion_tokens":5}}"#,
            br#"{"usage":"none"}"#,
            br#"{"usage":{"prompt_tokens":"12"}}"#,
            br#" { "usage" : { "prompt_tokens" : 1 , "completion_tokens" : 2 } } "#,
            br#"{"\u0075sage":{"prompt_tokens":1}}"#,
        ];
        for doc in docs {
            assert_eq!(parse_usage(doc), parse_whole(doc), "{}", doc.escape_ascii());
        }
        assert_eq!(
            parse_usage(docs[0]),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 16,
                ..Default::default()
            })
        );
        assert_eq!(parse_usage(docs[3]).map(|u| u.completion_tokens), Some(9));
        assert_eq!(parse_usage(docs[11]).map(|u| u.prompt_tokens), Some(1));
    }

    #[test]
    fn anthropic_usage_counts_cached_input_in_the_prompt() {
        let message = br#"{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}}"#;
        assert_eq!(
            parse_usage(message),
            Some(Usage {
                prompt_tokens: 115,
                completion_tokens: 7,
                cache_read_tokens: 100,
                cache_write_tokens: 5,
            })
        );
    }

    #[test]
    fn finds_usage_in_fragments() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"a \"usage\": {\"prompt_tokens\": 99} }"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(
            find_usage(body),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Default::default()
            })
        );
        assert_eq!(
            find_usage(&body[40..]),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Default::default()
            })
        );
        assert_eq!(find_usage(br#"{"usage":null}"#), None);
        assert_eq!(
            find_usage(br#"{"usage":{"input_tokens":2,"output_tokens":5}}"#),
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 5,
                ..Default::default()
            })
        );
    }

    #[test]
    fn window_stays_bounded_and_finds_usage_at_either_end() {
        let mut big = b"{\"data\":[".to_vec();
        big.extend(std::iter::repeat_n(b'1', 200_000));
        big.extend_from_slice(br#"],"usage":{"prompt_tokens":8,"total_tokens":8}}"#);
        let mut window = JsonUsageWindow::default();
        for chunk in big.chunks(1000) {
            window.feed(chunk);
        }
        assert!(window.head.len() <= WINDOW && window.tail.len() <= WINDOW);
        assert_eq!(
            window.usage(),
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 0,
                ..Default::default()
            })
        );

        let mut first = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"data":""#.to_vec();
        first.extend(std::iter::repeat_n(b'x', 100_000));
        first.extend_from_slice(b"\"}");
        let mut window = JsonUsageWindow::default();
        window.feed(&first);
        assert_eq!(
            window.usage(),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                ..Default::default()
            })
        );
    }
}
