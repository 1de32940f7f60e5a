//! The gateway end to end over real processes: proxying, streaming, key handling, routing
//! and every error the gateway answers itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, MASTER_KEY, Mock, chat_body, client, expect_error, mock_route};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_completion_matches_the_upstream_answer() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;

    let via_gateway: Value = gw
        .post("/v1/chat/completions")
        .json(&chat_body("mini", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let direct: Value = client()
        .post(format!("{}/chat/completions", mock.url()))
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_gateway["object"], "chat.completion");
    assert_eq!(
        via_gateway["choices"][0]["message"]["content"],
        direct["choices"][0]["message"]["content"]
    );
    assert_eq!(via_gateway["usage"], direct["usage"]);
    // The alias was resolved: the upstream saw the configured model name.
    assert_eq!(via_gateway["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn stream_events_arrive_before_the_upstream_finishes() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;

    let started = Instant::now();
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=6,itl=150ms")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut arrivals = Vec::new();
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        arrivals.push(started.elapsed());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The upstream spends 6 × 150 ms between tokens; a buffering proxy would deliver
    // everything at the end, so the first chunk would arrive with the last.
    let (first, last) = (arrivals[0], *arrivals.last().unwrap());
    assert!(
        arrivals.len() >= 4,
        "expected several separate chunks, got {}",
        arrivals.len()
    );
    assert!(
        last - first >= Duration::from_millis(600),
        "first chunk at {first:?}, last at {last:?}"
    );
}

#[tokio::test]
async fn stream_content_assembles_to_the_non_stream_content() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let full: Value = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut body = chat_body("gpt-4o-mini", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut assembled = String::new();
    let mut usage = Value::Null;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            break;
        }
        let event: Value = serde_json::from_str(data).unwrap();
        if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
            assembled.push_str(piece);
        }
        if event["usage"].is_object() {
            usage = event["usage"].clone();
        }
    }
    assert_eq!(
        assembled,
        full["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(usage, full["usage"]);
}

#[tokio::test]
async fn memory_does_not_grow_with_stream_length() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    // Warm up allocator and connection pools first.
    let warm = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=2000")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    warm.bytes().await.unwrap();
    // The warm-up's usage event is written (a database transaction, perhaps a new pooled
    // connection) before the baseline is taken.
    for _ in 0..200 {
        if gw
            .metrics_text()
            .await
            .contains("tollgate_usage_events_total{outcome=\"written\"} 1")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let before = gw.proc.rss_kib();

    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=200000")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    let mut total = 0usize;
    let mut peak = before;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
        if total % (1 << 20) < 4096 {
            peak = peak.max(gw.proc.rss_kib());
        }
    }
    peak = peak.max(gw.proc.rss_kib());
    assert!(total > 20 << 20, "stream too short to tell: {total} bytes");
    // A buffering proxy would hold the whole stream (> 20 MiB).
    assert!(
        peak - before < 8 * 1024,
        "RSS grew from {before} KiB to {peak} KiB over a {total}-byte stream"
    );
}

#[tokio::test]
async fn the_client_key_never_reaches_the_upstream() {
    let mock = Mock::spawn_with(&["--api-key", "sk-upstream-secret"]);
    let config = format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}', api_key: sk-upstream-secret, headers: {{x-team: platform}}}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream, model: renamed-upstream-model}}]\n",
        mock.url()
    );
    let gw = Gateway::spawn(&config).await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-api-key", MASTER_KEY)
        .header("x-request-id", "req-from-client-1")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-from-client-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "renamed-upstream-model");

    let seen = mock.requests().await;
    let text = seen.to_string();
    assert!(
        !text.contains(MASTER_KEY),
        "the client's key reached the upstream: {text}"
    );
    assert!(text.contains("Bearer sk-upstream-secret"), "{text}");
    assert!(text.contains("platform"), "extra header missing: {text}");
    assert!(text.contains("renamed-upstream-model"), "{text}");
}

#[tokio::test]
async fn bodies_are_forwarded_byte_for_byte_whatever_their_size() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn_with_server(&mock_route(&mock), "  max_body_size: 4MiB\n").await;
    for size in [100usize, 60 * 1024, 64 * 1024, 70 * 1024, 1 << 20, 3 << 20] {
        // Odd spacing and key order must survive untouched.
        let filler = "x".repeat(size);
        let body = format!(
            "{{ \"messages\" :[{{\"role\":\"user\",\"content\":\"{filler}\"}}],\n  \"model\":\"gpt-4o-mini\" , \"n\":1}}"
        );
        let resp = gw
            .post("/v1/chat/completions")
            .header("x-mock", "echo")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "size {size}");
        let echoed = resp.bytes().await.unwrap();
        assert!(
            echoed == body.as_bytes(),
            "size {size}: body changed in transit ({} bytes back)",
            echoed.len()
        );
    }
}

#[tokio::test]
async fn gateway_errors_use_the_openai_shape() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn_with_server(&mock_route(&mock), "  max_body_size: 4KiB\n").await;

    let e = expect_error(
        gw.post("/v1/chat/completions")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["code"], "invalid_json");
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .body("[]")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("JSON object"));
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .json(&json!({"messages": []}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["code"], "missing_model");
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .json(&chat_body("gpt-9", false))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(e["code"], "model_not_found");
    assert!(e["message"].as_str().unwrap().contains("gpt-9"));
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .body("x".repeat(5000))
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    assert_eq!(e["code"], "request_too_large");
    let e = expect_error(
        gw.post("/v1/nothing")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(e["code"], "unknown_url");
    let e = expect_error(gw.get("/v1/chat/completions").send().await.unwrap(), 405).await;
    assert_eq!(e["code"], "method_not_allowed");
    let e = expect_error(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o-mini", false))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert_eq!(e["code"], "missing_api_key");
    let e = expect_error(
        client()
            .get(gw.url("/v1/models"))
            .bearer_auth("tg_wrong")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert_eq!(e["code"], "invalid_api_key");

    // The connection still works after each of those.
    let ok = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let mock = Mock::spawn();
    let config = format!(
        "providers:\n  - {{name: dead, kind: openai-compatible, base_url: 'http://127.0.0.1:1/v1'}}\n  - {{name: slow, kind: openai-compatible, base_url: '{}', timeouts: {{first_byte: 300ms, idle: 300ms}}}}\nmodels:\n  - {{name: dead-model, deployments: [{{provider: dead}}]}}\n  - {{name: slow-model, deployments: [{{provider: slow}}]}}\n",
        mock.url()
    );
    let gw = Gateway::spawn(&config).await;
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .json(&chat_body("dead-model", false))
            .send()
            .await
            .unwrap(),
        502,
    )
    .await;
    assert_eq!(e["code"], "upstream_unreachable");
    assert_eq!(e["type"], "server_error");
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .header("x-mock", "hang")
            .json(&chat_body("slow-model", false))
            .send()
            .await
            .unwrap(),
        504,
    )
    .await;
    assert_eq!(e["code"], "upstream_timeout");
    let e = expect_error(
        gw.post("/v1/chat/completions")
            .header("x-mock", "hang")
            .json(&chat_body("slow-model", true))
            .send()
            .await
            .unwrap(),
        504,
    )
    .await;
    assert_eq!(e["code"], "upstream_timeout");
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    // One failure does not cool a deployment down (five in 30 s do).
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "status=500")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");

    let direct = client()
        .post(format!("{}/chat/completions", mock.url()))
        .header("x-mock", "status=429,retry_after=7")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let direct_body = direct.text().await.unwrap();
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "status=429,retry_after=7")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body = resp.text().await.unwrap();
    // Ids differ per response; everything else is the upstream's.
    let strip = |s: &str| s.split("req_").next().unwrap_or(s).to_string();
    assert_eq!(strip(&body), strip(&direct_body));

    // The upstream asked for 7 s: the only deployment cools down for that long.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "no_healthy_deployment"
    );
}

#[tokio::test]
async fn a_broken_stream_ends_with_an_error_event() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=10,reset_after=3")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8_lossy(&resp.bytes().await.unwrap()).to_string();
    assert!(!text.contains("[DONE]"), "{text}");
    let error = text
        .split("\n\n")
        .find(|e| e.starts_with("event: error"))
        .unwrap_or_else(|| panic!("no error event in {text}"));
    let data: Value = serde_json::from_str(error.split("data: ").nth(1).unwrap()).unwrap();
    assert_eq!(data["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn unreachable_deployments_fall_back_to_the_next() {
    let mock = Mock::spawn();
    let config = format!(
        "providers:\n  - {{name: dead, kind: openai-compatible, base_url: 'http://127.0.0.1:1/v1'}}\n  - {{name: backup, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments:\n      - {{provider: dead, weight: 1}}\n      - {{provider: backup, weight: 0}}\n",
        mock.url()
    );
    let gw = Gateway::spawn(&config).await;
    for _ in 0..3 {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&chat_body("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(mock.stats().await["requests_total"], 3);
}

#[tokio::test]
async fn models_are_listed_from_the_config() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let list: Value = gw
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "gpt-4o-mini");
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(list["data"][0]["owned_by"], "upstream");
    assert!(list["data"][0]["created"].is_u64());
    let one: Value = gw
        .get("/v1/models/mini")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "gpt-4o-mini");
    expect_error(gw.get("/v1/models/nope").send().await.unwrap(), 404).await;
    assert_eq!(
        mock.stats().await["requests_total"],
        0,
        "the model list must not call the upstream"
    );
}

#[tokio::test]
async fn embeddings_completions_and_responses_are_proxied() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let e: Value = gw.post("/v1/embeddings").json(&json!({"model": "gpt-4o-mini", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8})).send().await.unwrap().json().await.unwrap();
    assert_eq!(e["data"].as_array().unwrap().len(), 2);
    assert_eq!(e["data"][1]["embedding"].as_array().unwrap().len(), 8);
    let c: Value = gw
        .post("/v1/completions")
        .json(&json!({"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["object"], "text_completion");
    assert_eq!(c["usage"]["completion_tokens"], 3);
    let r: Value = gw
        .post("/v1/responses")
        .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "response");
    assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn metrics_count_requests_and_tokens() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let mut body = chat_body("gpt-4o-mini", true);
    body["stream_options"] = json!({"include_usage": true});
    gw.post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    gw.post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let upstream = mock.stats().await;
    let completion = format!(
        "tollgate_tokens_total{{kind=\"completion\",model=\"gpt-4o-mini\",provider=\"upstream\"}} {}",
        upstream["completion_tokens"]
    );
    let requests = "tollgate_requests_total{endpoint=\"chat_completions\",model=\"gpt-4o-mini\",provider=\"upstream\",status=\"200\"} 2";
    // Pingora runs the logging phase after the last byte is sent: poll briefly.
    let mut text = String::new();
    for _ in 0..100 {
        text = gw.metrics_text().await;
        if text.contains(&completion) && text.contains(requests) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {completion:?} and {requests:?} in\n{text}");
}

#[test]
fn check_config_rejects_bad_files_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = "providers:\n  - {name: openai, kind: openai-compatible, base_url: 'http://127.0.0.1:9/v1'}\nmodels:\n  - name: m\n    deployments:\n      - provider: openai\n";
    let cases = [
        (
            good.replace(
                "provider: openai\n",
                "provider: openai\n        wieght: 2\n",
            ),
            "test.yaml:7: models[0].deployments[0].wieght: unknown field `wieght`",
        ),
        (
            good.replace("provider: openai\n", "provider: opnai\n"),
            "test.yaml:6: models[0].deployments[0].provider: unknown provider \"opnai\"",
        ),
        (
            format!("{good}  - name: m\n    deployments: [{{provider: openai}}]\n"),
            "test.yaml:7: models[1].name: duplicate model name \"m\"",
        ),
        (
            good.replace("http://127.0.0.1:9/v1", "htp:/nowhere"),
            "test.yaml:2: providers[0].base_url: invalid URL",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("test.yaml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(dir.path())
            .args(["check-config", "test.yaml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?}, got {stderr:?}"
        );
    }
    std::fs::write(dir.path().join("test.yaml"), good).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(dir.path())
        .args(["check-config", "test.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn expect_continue_still_gets_a_json_error_when_the_upstream_is_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = "providers:\n  - {name: dead, kind: openai-compatible, base_url: 'http://127.0.0.1:1/v1'}\nmodels:\n  - {name: m, deployments: [{provider: dead}]}\n";
    let gw = Gateway::spawn(config).await;
    let body = serde_json::to_string(&chat_body("m", false)).unwrap();
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    conn.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert!(
        response.contains("\"code\":\"upstream_unreachable\""),
        "{response}"
    );
}

#[tokio::test]
async fn chunked_uploads_are_forwarded_or_refused_with_411() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&mock_route(&mock)).await;
    let chunked = |body: String| {
        let pieces: Vec<Result<String, std::io::Error>> = body
            .as_bytes()
            .chunks(1000)
            .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
            .collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
    };
    let small = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "y".repeat(20_000)
    );
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "echo")
        .body(chunked(small.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), small);

    let large = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "y".repeat(100_000)
    );
    let resp = gw
        .post("/v1/chat/completions")
        .body(chunked(large))
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 411).await;
    assert_eq!(e["code"], "length_required");
}
