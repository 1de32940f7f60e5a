//! Per-request behaviour directives (`x-mock` header and `model@…` suffix), over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn stream_body(model: &str) -> Value {
    let mut body = chat_body(model, "stream please");
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn status_429_with_retry_after_and_rate_limit_headers() {
    let server = start().await;
    let resp = post(
        &server,
        "/v1/chat/completions",
        &chat_body("gpt-4o-mini@status=429,retry_after=3", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert_eq!(h["retry-after"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert!(h.contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-4o-mini ") && !message.contains('@'),
        "{message}"
    );

    // From the header, retry-after defaults to 1.
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "status=429")
        .json(&chat_body("gpt-4o-mini", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(server.stats().errors_injected.status.get(&429), Some(&2));
    assert_eq!(server.stats().completion_tokens, 0);
}

#[tokio::test]
async fn status_5xx_on_every_endpoint() {
    let server = start().await;
    let c = client();
    let resp = c
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "status=500")
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert!(!resp.headers().contains_key("retry-after"));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "server_error"
    );

    let resp = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "m@status=503", "input": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    let resp = post(
        &server,
        "/v1/responses",
        &json!({"model": "m@status=502", "input": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let resp = c
        .get(url(&server, "/v1/models"))
        .header("x-mock", "status=500")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let injected = server.stats().errors_injected.status;
    assert_eq!(injected.values().sum::<u64>(), 4);
    assert_eq!(injected.get(&500), Some(&2));
}

#[tokio::test]
async fn latency_delays_the_response() {
    let server = start().await;
    let started = Instant::now();
    let resp = post(
        &server,
        "/v1/chat/completions",
        &chat_body("m@latency=200ms", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let ms: u64 = resp.headers()["openai-processing-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 200, "processing-ms {ms}");
}

#[tokio::test]
async fn ttft_and_itl_pace_stream_chunks() {
    let server = start().await;
    let started = Instant::now();
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "ttft=150ms,itl=40ms,tokens=3")
        .json(&stream_body("m"))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let mut first_token_at = None;
    while let Some(chunk) = body.next().await {
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if first_token_at.is_none()
            && seen.contains("\"delta\":{\"content\":\"")
            && seen.matches("data: ").count() >= 2
        {
            first_token_at = Some(started.elapsed());
        }
    }
    let first = first_token_at.unwrap();
    assert!(
        first >= Duration::from_millis(150),
        "first token after {first:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150 + 2 * 40));
    assert_eq!(chunk_payloads(&seen).len(), 1 + 3 + 1);
}

#[tokio::test]
async fn reset_after_breaks_the_stream_and_counts_only_sent_tokens() {
    let server = start().await;
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "reset_after=3")
        .json(&stream_body("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => seen.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(
        broke,
        "the client must see a broken body, got a clean end after {seen:?}"
    );
    assert!(!seen.contains("[DONE]") && !seen.contains("finish_reason\":\"stop"));
    let events = sse_events(&seen);
    assert_eq!(
        events.len(),
        1 + 3,
        "role chunk and 3 token chunks were flushed before the reset"
    );
    let stats = server.stats();
    assert_eq!(stats.completion_tokens, 3);
    assert_eq!(
        (
            stats.streams.started,
            stats.streams.completed,
            stats.streams.aborted
        ),
        (1, 0, 1)
    );
    assert_eq!(stats.errors_injected.reset_after, 1);
}

#[tokio::test]
async fn client_going_away_mid_stream_counts_an_aborted_stream() {
    let server = start().await;
    let resp = post(
        &server,
        "/v1/chat/completions",
        &stream_body("m@itl=30ms,tokens=50"),
    )
    .await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("\"content\":\"").count() < 4 {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.stats().streams.aborted == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = server.stats();
    assert_eq!((stats.streams.aborted, stats.streams.completed), (1, 0));
    assert!(
        (3..50).contains(&stats.completion_tokens),
        "served {}",
        stats.completion_tokens
    );
}

#[tokio::test]
async fn hang_never_answers() {
    let server = start().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = impatient
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "hang")
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.stats().errors_injected.hang, 1);
    // The server is still fine.
    assert_eq!(
        post(&server, "/v1/chat/completions", &chat_body("m", "hi"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn reset_closes_without_a_response() {
    let server = start().await;
    let err = post_err(&server, &chat_body("m@reset", "hi")).await;
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    // For non-stream requests reset_after behaves like reset.
    let err = post_err(&server, &chat_body("m@reset_after=2", "hi")).await;
    assert!(err.status().is_none());
    assert_eq!(server.stats().errors_injected.reset, 2);
}

#[allow(clippy::unwrap_used)] // test helper
async fn post_err(server: &tollgate_mock::MockServer, body: &Value) -> reqwest::Error {
    // A fresh client: a connection dropped without a response must not be retried on a new one.
    reqwest::Client::new()
        .post(url(server, "/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn content_type_and_html() {
    let server = start().await;
    let c = client();
    let resp = c
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "content_type=text/plain")
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["object"], "chat.completion", "the body is unchanged");

    let resp = post(
        &server,
        "/v1/chat/completions",
        &stream_body("m@content_type=application/json"),
    )
    .await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    let resp = post(&server, "/v1/chat/completions", &chat_body("m@html", "hi")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<h1>502 Bad Gateway</h1>")
    );
    assert_eq!(server.stats().errors_injected.html, 1);
}

#[tokio::test]
async fn unknown_or_malformed_directives_are_400() {
    let server = start().await;
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "tokens=2,explode")
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`explode`")
    );
    assert_eq!(v["error"]["code"], "invalid_mock_directive");
    let resp = post(
        &server,
        "/v1/chat/completions",
        &chat_body("m@latency=soon", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 400);

    // The model suffix wins over the header.
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "tokens=9")
        .json(&chat_body("m@tokens=2", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["usage"]["completion_tokens"],
        2
    );
}

#[tokio::test]
async fn echo_returns_the_request_body_byte_for_byte() {
    let server = start().await;
    let body = "{ \"messages\" :[{\"role\":\"user\",\"content\":\"caf\\u00e9\"}],\n  \"model\":\"m\" , \"n\":1}";
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock", "echo")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.bytes().await.unwrap(), body.as_bytes());
}
