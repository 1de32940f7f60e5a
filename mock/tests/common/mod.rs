//! Test helpers: an in-process mock on 127.0.0.1 port 0 per test, so tests run in parallel.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: a failed setup should panic

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tollgate_mock::{MockOptions, MockServer};

pub async fn start() -> MockServer {
    start_with(MockOptions::default()).await
}

pub async fn start_with(opts: MockOptions) -> MockServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockServer::spawn(listener, opts).unwrap()
}

pub fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{}", server.local_addr(), path)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn chat_body(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

pub async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url(server, path))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn post_json(server: &MockServer, path: &str, body: &Value) -> Value {
    let resp = post(server, path, body).await;
    assert_eq!(resp.status(), 200, "unexpected status for {path}");
    resp.json().await.unwrap()
}

/// Splits an SSE body into events: (event name if any, data).
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

/// The JSON payloads of a `data:`-only stream, checking it ends with `[DONE]`.
pub fn chunk_payloads(body: &str) -> Vec<Value> {
    let events = sse_events(body);
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last.1, "[DONE]");
    rest.iter()
        .map(|(name, data)| {
            assert!(name.is_none());
            serde_json::from_str(data).unwrap()
        })
        .collect()
}
