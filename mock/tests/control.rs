//! Stats, the request log, API-key enforcement, Azure paths, and the three ways to run the mock
//! (in-process handle, `router()`, the binary).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{Value, json};
use tollgate_mock::{MockOptions, MockStatsSnapshot, RecordedRequest};

#[tokio::test]
async fn stats_count_and_reset_zeroes_them() {
    let server = start().await;
    let c = client();
    post_json(
        &server,
        "/v1/chat/completions",
        &chat_body("m@tokens=5", "abcd"),
    )
    .await;
    post_json(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "abcdefgh"}),
    )
    .await;
    c.get(url(&server, "/v1/models")).send().await.unwrap();

    let stats: MockStatsSnapshot = c
        .get(url(&server, "/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, server.stats(), "HTTP and in-process views agree");
    assert_eq!(stats.requests_total, 3);
    assert_eq!(
        (
            stats.requests.chat_completions,
            stats.requests.embeddings,
            stats.requests.models
        ),
        (1, 1, 1)
    );
    assert_eq!(stats.prompt_tokens, (3 + 3 + 1) + 2);
    assert_eq!(stats.completion_tokens, 5);
    // The JSON field names other crates rely on.
    let raw: Value = c
        .get(url(&server, "/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "requests_total",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "streams",
        "errors_injected",
        "rejected",
    ] {
        assert!(raw.get(key).is_some(), "missing {key} in {raw}");
    }
    assert!(raw["streams"].get("aborted").is_some());

    let reset = c.post(url(&server, "/_mock/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(server.stats(), MockStatsSnapshot::default());
    let log: Vec<RecordedRequest> = c
        .get(url(&server, "/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.is_empty());
}

#[tokio::test]
async fn request_log_records_what_was_forwarded() {
    let server = start().await;
    client()
        .post(url(&server, "/v1/chat/completions?trace=1"))
        .header("authorization", "Bearer sk-upstream")
        .header("x-request-id", "abc")
        .header("x-tenant", "t1")
        .header("accept-language", "fr")
        .json(&json!({"model": "gpt-4o@tokens=1", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client()
        .get(url(&server, "/v1/nothing-here"))
        .send()
        .await
        .unwrap();

    let log: Vec<RecordedRequest> = client()
        .get(url(&server, "/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 2, "control requests are not recorded: {log:?}");
    let first = &log[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/v1/chat/completions?trace=1")
    );
    assert_eq!(first.headers["authorization"], "Bearer sk-upstream");
    assert_eq!(first.headers["x-request-id"], "abc");
    assert_eq!(first.headers["x-tenant"], "t1");
    assert_eq!(first.headers["content-type"], "application/json");
    assert!(first.headers.contains_key("host") && first.headers.contains_key("content-length"));
    assert!(
        !first.headers.contains_key("accept-language"),
        "only the listed and x-* headers"
    );
    assert_eq!(first.model.as_deref(), Some("gpt-4o@tokens=1"));
    assert_eq!(first.stream, Some(true));
    assert_eq!(
        (
            log[1].method.as_str(),
            log[1].path.as_str(),
            log[1].model.as_ref()
        ),
        ("GET", "/v1/nothing-here", None)
    );
    assert_eq!(server.requests(), log);

    // The ring keeps the last 64.
    for i in 0..70 {
        post(
            &server,
            "/v1/embeddings",
            &json!({"model": format!("e{i}"), "input": "x"}),
        )
        .await;
    }
    let log = server.requests();
    assert_eq!(log.len(), 64);
    assert_eq!(log.last().and_then(|r| r.model.as_deref()), Some("e69"));

    server.set_recording(false);
    post(
        &server,
        "/v1/embeddings",
        &json!({"model": "unrecorded", "input": "x"}),
    )
    .await;
    assert_eq!(
        server.requests().last().and_then(|r| r.model.as_deref()),
        Some("e69")
    );
}

#[tokio::test]
async fn api_key_is_enforced() {
    let server = start_with(MockOptions {
        api_key: Some("sk-mock-key".into()),
        ..MockOptions::default()
    })
    .await;
    let c = client();
    let chat = url(&server, "/v1/chat/completions");
    let body = chat_body("m", "hi");

    let none = c.post(&chat).json(&body).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let v: Value = none.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].clone(), v["error"]["code"].clone()),
        (json!("invalid_request_error"), json!("invalid_api_key"))
    );
    let wrong = c
        .post(&chat)
        .bearer_auth("sk-wrong-key-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.text().await.unwrap().contains("sk-***-123"),
        "the masked key helps spot what was forwarded"
    );

    assert_eq!(
        c.post(&chat)
            .bearer_auth("sk-mock-key")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.post(&chat)
            .header("api-key", "sk-mock-key")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(url(&server, "/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Control endpoints stay open for tests.
    assert_eq!(
        c.get(url(&server, "/_mock/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.stats().rejected.unauthorized, 3);
    assert_eq!(server.stats().completion_tokens, 32);
}

#[tokio::test]
async fn azure_paths_need_api_version_and_api_key() {
    let server = start_with(MockOptions {
        api_key: Some("az-key".into()),
        ..MockOptions::default()
    })
    .await;
    let c = client();
    let base = url(&server, "/openai/deployments/prod-gpt4o/chat/completions");
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});

    let no_version = c
        .post(&base)
        .header("api-key", "az-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 404);
    assert_eq!(
        no_version.json::<Value>().await.unwrap(),
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );

    let versioned = format!("{base}?api-version=2024-10-21");
    let bearer = c
        .post(&versioned)
        .bearer_auth("az-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        401,
        "Azure authenticates with the api-key header"
    );
    assert_eq!(
        bearer.json::<Value>().await.unwrap()["error"]["code"],
        "401"
    );

    let ok: Value = c
        .post(&versioned)
        .header("api-key", "az-key")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["object"], "chat.completion");
    assert_eq!(
        ok["model"], "prod-gpt4o",
        "the deployment stands in for a missing model"
    );

    let emb = url(
        &server,
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
    );
    let v: Value = c
        .post(&emb)
        .header("api-key", "az-key")
        .json(&json!({"input": "hello", "dimensions": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    let stats = server.stats();
    assert_eq!(
        (
            stats.azure_requests,
            stats.requests.chat_completions,
            stats.requests.embeddings
        ),
        (4, 3, 1)
    );
}

#[tokio::test]
async fn router_can_be_mounted_in_another_server() {
    let (router, stats) = tollgate_mock::router(MockOptions {
        default_completion_tokens: 4,
        ..MockOptions::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let v: Value = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(stats.snapshot().completion_tokens, 4);
}

#[tokio::test]
async fn shutdown_closes_the_server() {
    let server = start().await;
    let c = client();
    assert_eq!(
        c.get(url(&server, "/_mock/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        reqwest::Client::new()
            .get(url(&server, "/_mock/health"))
            .send()
            .await
            .is_err()
    );
}

/// Kills the child even when an assertion fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--api-key",
                "k1",
                "--default-tokens",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let announced: Value = serde_json::from_str(&line).unwrap();
    let addr = announced["listening"].as_str().unwrap();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{line}"
    );
    assert_eq!(
        line.trim_end(),
        json!({"listening": addr}).to_string(),
        "exactly one JSON line"
    );

    let c = client();
    let resp = c
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("k1")
        .json(&chat_body("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["usage"]["completion_tokens"],
        3
    );
    let stats: MockStatsSnapshot = c
        .get(format!("http://{addr}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests_total, 1);
}
