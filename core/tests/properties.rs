//! Property tests for the parsers the request path and the config rely on: none panics on
//! any input, and the incremental ones give the same answer however a body is cut into
//! chunks. Bounded (proptest's default case count), so they run in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use tollgate_core::{
    body,
    config::Config,
    secrets::ServerSecret,
    sse::SseScanner,
    usage::{JsonUsageWindow, Usage},
};

/// Cuts `bytes` at the given points (taken modulo its length, in order).
fn cut(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = points
        .iter()
        .map(|p| if bytes.is_empty() { 0 } else { p % bytes.len() })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in at {
        chunks.push(bytes[start..point].to_vec());
        start = point;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

/// A stream as an OpenAI-compatible upstream sends it: content deltas, optionally the
/// usage-only chunk the gateway asks for, and `[DONE]`.
fn stream(words: &[String], usage: Option<(u64, u64)>) -> (Vec<u8>, Vec<u8>) {
    let mut with_usage = Vec::new();
    let mut without = Vec::new();
    for word in words {
        let event = format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": word}}]})
        );
        with_usage.extend_from_slice(event.as_bytes());
        without.extend_from_slice(event.as_bytes());
    }
    if let Some((prompt, completion)) = usage {
        let event = format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
        );
        with_usage.extend_from_slice(event.as_bytes());
    }
    with_usage.extend_from_slice(b"data: [DONE]\n\n");
    without.extend_from_slice(b"data: [DONE]\n\n");
    (with_usage, without)
}

proptest! {
    #[test]
    fn the_body_probe_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = body::probe(&bytes);
    }

    #[test]
    fn the_body_probe_finds_what_routing_needs(
        model in "[a-zA-Z0-9._:/-]{1,40}",
        stream in any::<bool>(),
        max_tokens in proptest::option::of(0u64..1_000_000),
        filler in "[a-z ]{0,200}",
    ) {
        let mut request = serde_json::json!({
            "messages": [{"role": "user", "content": filler}],
            "model": model,
            "stream": stream,
        });
        if let Some(max) = max_tokens {
            request["max_tokens"] = max.into();
        }
        let text = serde_json::to_vec(&request).unwrap();
        let probe = body::probe(&text).unwrap();
        prop_assert_eq!(probe.model.as_deref(), Some(model.as_str()));
        prop_assert_eq!(probe.stream, stream);
        prop_assert_eq!(probe.max_tokens, max_tokens);
        // The span covers the quoted model, so a deployment's name can replace it.
        let span = probe.model_span.unwrap();
        let renamed = body::replace_model(&Bytes::from(text), &span, "other-model");
        let reprobed = body::probe(&renamed).unwrap();
        prop_assert_eq!(reprobed.model.as_deref(), Some("other-model"));
    }

    #[test]
    fn the_stream_scanner_never_panics_and_stays_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut scanner = SseScanner::new();
        let mut filter = SseScanner::new();
        for chunk in cut(&bytes, &points) {
            scanner.feed(&chunk);
            let _ = filter.filter_usage_chunk(&chunk);
        }
        let _ = (scanner.usage(), scanner.content_events(), filter.take_pending());
    }

    #[test]
    fn the_stream_scanner_reads_the_same_however_the_stream_is_cut(
        words in proptest::collection::vec("[a-z]{1,8}", 0..20),
        usage in proptest::option::of((0u64..100_000, 0u64..100_000)),
        points in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let (sent, expected) = stream(&words, usage);
        let mut whole = SseScanner::new();
        whole.feed(&sent);
        let mut cut_up = SseScanner::new();
        let mut filter = SseScanner::new();
        let mut forwarded = Vec::new();
        for chunk in cut(&sent, &points) {
            cut_up.feed(&chunk);
            forwarded.extend(filter.filter_usage_chunk(&chunk));
        }
        forwarded.extend(filter.take_pending());
        let usage = usage.map(|(prompt_tokens, completion_tokens)| Usage { prompt_tokens, completion_tokens, ..Default::default() });
        prop_assert_eq!(whole.usage(), usage);
        prop_assert_eq!(cut_up.usage(), usage);
        prop_assert_eq!(cut_up.content_events(), words.len() as u64);
        prop_assert_eq!(filter.usage(), usage);
        // The usage-only event the gateway asked for is taken out, nothing else.
        prop_assert_eq!(forwarded, expected);
    }

    #[test]
    fn the_json_usage_window_reads_the_same_however_the_body_is_cut(
        padding in 0usize..60_000,
        prompt in 0u64..1_000_000,
        completion in 0u64..1_000_000,
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let body = serde_json::json!({
            "id": "chatcmpl-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x".repeat(padding)}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut window = JsonUsageWindow::default();
        for chunk in cut(&bytes, &points) {
            window.feed(&chunk);
        }
        prop_assert_eq!(window.usage(), Some(Usage { prompt_tokens: prompt, completion_tokens: completion, ..Default::default() }));
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,400}") {
        let _ = Config::from_yaml(&text, "prop", &|_| None);
    }

    #[test]
    fn config_parsing_never_panics_on_config_shaped_text(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("providers:".to_string()),
                Just("models:".to_string()),
                Just("server:".to_string()),
                Just("quota:".to_string()),
                "  - \\{name: [a-z]{0,5}, kind: [a-z-]{0,20}, base_url: '[a-z:/.0-9]{0,20}'\\}",
                "  - name: [a-z0-9-]{0,10}",
                "    deployments: \\[\\{provider: [a-z]{0,5}, weight: -?[0-9]{0,3}\\}\\]",
                "  [a-z_]{1,12}: [a-z0-9.]{0,12}",
                "    rpm: -?[0-9]{0,20}",
            ],
            0..12,
        )
    ) {
        let _ = Config::from_yaml(&lines.join("\n"), "prop", &|_| None);
    }

    #[test]
    fn the_key_format_check_never_panics(text in "\\PC{0,80}") {
        let secret = ServerSecret::new("property-test-secret-0123456789-abcdef", &[]).unwrap();
        prop_assert!(!secret.is_issued_key(&text) || text.starts_with("tg_"));
    }
}
