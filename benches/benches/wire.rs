//! Micro-benchmarks of the per-request byte work in `tollgate_core`: probing and rewriting
//! request bodies, scanning SSE streams and finding `usage` in large JSON responses.
//! Run with `cargo bench -p tollgate-benches --bench wire`.

use std::hint::black_box;
use std::ops::Range;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tollgate_core::body::{probe, replace_model};
use tollgate_core::sse::SseScanner;
use tollgate_core::usage::JsonUsageWindow;

/// A typical small chat request (~300 B) with `model` first, as the OpenAI SDKs send it.
fn small_chat_body() -> Vec<u8> {
    br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."},{"role":"user","content":"What is the capital of France, and what is it famous for? One sentence please."}],"temperature":0.2,"max_tokens":64,"stream":false,"user":"user-1234"}"#
        .to_vec()
}

/// A chat request with a 100 KiB user message and `model` as the last key: the probe has
/// to walk the whole body before it finds the routing fields.
fn large_chat_body_model_last() -> Vec<u8> {
    let text =
        "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(100 * 1024 / 57 + 1);
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": &text[..100 * 1024]}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 256,
    });
    let mut s = body.to_string();
    s.pop(); // the closing brace
    s.push_str(r#","model":"gpt-4o-mini"}"#);
    s.into_bytes()
}

fn model_span(body: &[u8]) -> Range<usize> {
    match probe(body) {
        Ok(p) => p.model_span.unwrap_or(0..0),
        Err(e) => panic!("benchmark body does not probe: {e}"),
    }
}

/// A chat completion stream as OpenAI sends it with `stream_options.include_usage`: a role
/// chunk, one chunk per token (each with `"usage":null`), a finish chunk, a usage chunk and
/// `[DONE]`. About 300 B per event: 16 tokens make ~6 KB, like tollgate-mock's streams.
fn chat_stream(tokens: usize) -> Vec<u8> {
    const HEAD: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":"#;
    let words = [
        "The", " capital", " of", " France", " is", " Paris", ",", " known", " for", " the",
        " Eiffel", " Tower", " and", " the", " Louvre", ".",
    ];
    let mut out = String::new();
    let mut push = |delta: &str, finish: &str| {
        out.push_str("data: ");
        out.push_str(HEAD);
        out.push_str(delta);
        out.push_str(r#","logprobs":null,"finish_reason":"#);
        out.push_str(finish);
        out.push_str(r#"}],"usage":null}"#);
        out.push_str("\n\n");
    };
    push(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    );
    for i in 0..tokens {
        push(
            &format!(r#"{{"content":"{}"}}"#, words[i % words.len()]),
            "null",
        );
    }
    push("{}", r#""stop""#);
    out.push_str("data: ");
    out.push_str(HEAD.trim_end_matches(r#"[{"index":0,"delta":"#));
    out.push_str(&format!(
        r#"[],"usage":{{"prompt_tokens":24,"completion_tokens":{tokens},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#,
        tokens + 24
    ));
    out.push_str("\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

/// An embeddings response of about 200 KiB: `usage` is at the very end.
fn embeddings_body() -> Vec<u8> {
    let mut out =
        String::from(r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":["#);
    let mut i: u64 = 0;
    while out.len() < 200 * 1024 {
        if i > 0 {
            out.push(',');
        }
        // Deterministic values with the digit count of real embeddings.
        let v = (i.wrapping_mul(2_654_435_761) % 2_000_000) as f64 / 1e8 - 0.01;
        out.push_str(&format!("{v:.9}"));
        i += 1;
    }
    out.push_str(
        r#"]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
    );
    out.into_bytes()
}

fn bench_probe(c: &mut Criterion) {
    let mut g = c.benchmark_group("probe");
    let small = small_chat_body();
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("small_model_first", |b| b.iter(|| probe(black_box(&small))));
    let large = large_chat_body_model_last();
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("100KiB_model_last", |b| b.iter(|| probe(black_box(&large))));
    g.finish();
}

fn bench_replace_model(c: &mut Criterion) {
    let mut g = c.benchmark_group("replace_model");
    for (name, body) in [
        ("small", small_chat_body()),
        ("100KiB", large_chat_body_model_last()),
    ] {
        let span = model_span(&body);
        let body = Bytes::from(body);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                replace_model(
                    black_box(&body),
                    black_box(&span),
                    black_box("gpt-4o-mini-2024-07-18"),
                )
            })
        });
    }
    g.finish();
}

fn scan(stream: &[u8], chunk: usize) -> Option<u64> {
    let mut scanner = SseScanner::new();
    for part in stream.chunks(chunk) {
        scanner.feed(part);
    }
    debug_assert!(scanner.done());
    scanner.usage().map(|u| u.completion_tokens)
}

fn bench_sse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_scanner");
    let short = chat_stream(16);
    assert_eq!(
        scan(&short, short.len()),
        Some(16),
        "the 16-token stream must carry usage"
    );
    g.throughput(Throughput::Bytes(short.len() as u64));
    g.bench_function(format!("16_tokens_{}B_one_chunk", short.len()), |b| {
        b.iter(|| scan(black_box(&short), short.len()))
    });
    g.bench_function(format!("16_tokens_{}B_64B_chunks", short.len()), |b| {
        b.iter(|| scan(black_box(&short), 64))
    });
    let long = chat_stream(4000);
    assert_eq!(
        scan(&long, 4096),
        Some(4000),
        "the 4000-token stream must carry usage"
    );
    g.throughput(Throughput::Bytes(long.len() as u64));
    g.bench_function(
        format!("4000_tokens_{}KiB_4KiB_chunks", long.len() / 1024),
        |b| b.iter(|| scan(black_box(&long), 4096)),
    );
    g.finish();
}

fn bench_usage_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_usage_window");
    let body = embeddings_body();
    let mut check = JsonUsageWindow::default();
    for part in body.chunks(16 * 1024) {
        check.feed(part);
    }
    assert_eq!(
        check.usage().map(|u| u.prompt_tokens),
        Some(8),
        "the embeddings body must carry usage"
    );
    g.throughput(Throughput::Bytes(body.len() as u64));
    for chunk in [16 * 1024, body.len()] {
        let name = if chunk == body.len() {
            "200KiB_one_chunk".to_string()
        } else {
            "200KiB_16KiB_chunks".to_string()
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                JsonUsageWindow::default,
                |mut window| {
                    for part in black_box(&body).chunks(chunk) {
                        window.feed(part);
                    }
                    window.usage()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    wire,
    bench_probe,
    bench_replace_model,
    bench_sse,
    bench_usage_window
);
criterion_main!(wire);
