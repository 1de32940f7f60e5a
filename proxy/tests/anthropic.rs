//! Chat completions served by an `anthropic` deployment (the mock in its Anthropic mode):
//! translated there and back, streamed or not, with tool calls, cached-token usage metered,
//! untranslatable parameters refused by name, and Anthropic's overload (529) turned into a
//! 429 or, with a fallback, into another deployment's answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Mock};
use serde_json::{Value, json};

const MOCK_KEY: &str = "sk-ant-test-0123456789";

fn routes(anthropic: &Mock, openai: &Mock) -> String {
    format!(
        "providers:\n\
         \x20 - {{name: claude, kind: anthropic, base_url: 'http://{a}', api_key: '{MOCK_KEY}', max_tokens: 64}}\n\
         \x20 - {{name: openai, kind: openai-compatible, base_url: '{o}'}}\n\
         models:\n\
         \x20 - name: claude-haiku-4-5\n\
         \x20   deployments: [{{provider: claude, model: claude-haiku-4-5-20251001}}]\n\
         \x20   pricing: {{input_per_million: 1.0, output_per_million: 5.0}}\n\
         \x20 - name: overloaded\n\
         \x20   deployments: [{{provider: claude, model: 'claude-haiku-4-5@status=529,retry_after=2'}}]\n\
         \x20 - name: overloaded-with-fallback\n\
         \x20   deployments: [{{provider: claude, model: 'claude-haiku-4-5@status=529'}}]\n\
         \x20   fallbacks: [gpt-4o-mini]\n\
         \x20 - name: gpt-4o-mini\n\
         \x20   deployments: [{{provider: openai}}]\n",
        a = anthropic.addr,
        o = openai.url(),
    )
}

async fn chat(gw: &Gateway, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// The gateway's prompt and completion token counts for the Anthropic model equal the
/// mock's own counters (polled: the logging phase runs after the last byte is sent).
async fn assert_metered_as_upstream(gw: &Gateway, anthropic: &Mock) {
    let upstream = anthropic.stats().await;
    let expected = [
        format!(
            "tollgate_tokens_total{{kind=\"prompt\",model=\"claude-haiku-4-5\",provider=\"claude\"}} {}",
            upstream["prompt_tokens"]
        ),
        format!(
            "tollgate_tokens_total{{kind=\"completion\",model=\"claude-haiku-4-5\",provider=\"claude\"}} {}",
            upstream["completion_tokens"]
        ),
    ];
    let mut text = String::new();
    for _ in 0..100 {
        text = gw.metrics_text().await;
        if expected.iter().all(|line| text.contains(line.as_str())) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {expected:?} in\n{text}");
}

/// The events of an SSE body, `[DONE]` as a string.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

#[tokio::test]
async fn chat_completions_are_translated_both_ways() {
    let anthropic = Mock::spawn_with(&["--api-key", MOCK_KEY]);
    let openai = Mock::spawn();
    let gw = Gateway::spawn(&routes(&anthropic, &openai)).await;

    // Non-stream: content, finish reason, usage; the deployment's max_tokens applied.
    let (status, headers, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5",
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-haiku-4-5-20251001");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    let plain_text = v["choices"][0]["message"]["content"].clone();
    let seen = anthropic.stats().await;
    assert_eq!(seen["requests"]["messages"], 1);

    // Streamed with usage: the same text, assembled from deltas; one id throughout.
    let (status, headers, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "stream": true,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let got = events(&text);
    assert_eq!(got.last().unwrap(), &json!("[DONE]"));
    let assembled: String = got
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(json!(assembled), plain_text);
    let usage = &got[got.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 16);
    let id = &got[0]["id"];
    assert!(got[..got.len() - 1].iter().all(|e| &e["id"] == id));

    // Streamed without usage: no usage chunk (the gateway still meters it).
    let (_, _, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "stream": true,
               "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert!(
        events(&text).iter().all(|e| e.get("usage").is_none()),
        "{text}"
    );

    // Tool calls, plain and streamed.
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let (status, _, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "tools": tools, "tool_choice": "required",
               "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"mock city\"}");
    let (_, _, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "tools": tools, "tool_choice": "required", "stream": true,
               "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await;
    let got = events(&text);
    let arguments: String = got
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\":\"mock city\"}");
    assert!(
        got.iter()
            .any(|e| e["choices"][0]["finish_reason"] == "tool_calls")
    );

    // The tool's result goes back as a tool_result: the answer is text.
    let (status, _, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "tools": tools,
               "messages": [
                   {"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": null, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Metered from Anthropic's usage: the gateway's token counts are the mock's own.
    assert_metered_as_upstream(&gw, &anthropic).await;
}

#[tokio::test]
async fn what_cannot_be_translated_is_refused_and_overload_is_a_429_or_a_fallback() {
    let anthropic = Mock::spawn_with(&["--api-key", MOCK_KEY]);
    let openai = Mock::spawn();
    let gw = Gateway::spawn(&routes(&anthropic, &openai)).await;

    let (status, _, text) = chat(
        &gw,
        json!({"model": "claude-haiku-4-5", "seed": 7,
               "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["param"], "seed");
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    assert_eq!(
        anthropic.stats().await["requests"]["messages"],
        0,
        "refused before any upstream call"
    );

    let resp = gw
        .post("/v1/embeddings")
        .json(&json!({"model": "claude-haiku-4-5", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // 529 with nowhere else to go: a 429 an OpenAI SDK raises as RateLimitError.
    let (status, headers, text) = chat(
        &gw,
        json!({"model": "overloaded", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(headers["retry-after"], "2");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["message"], "Overloaded");

    // With a fallback model on another provider, the client gets its answer unchanged.
    let (status, headers, text) = chat(
        &gw,
        json!({"model": "overloaded-with-fallback", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{text}");
    assert_eq!(headers["x-tollgate-attempts"], "2");
}

/// 500 mixed requests over both ingresses — chat completions translated, Anthropic's messages
/// forwarded; streamed or not; with tools and prompt caching — is metered to the token: the
/// gateway's counts equal the mock's own.
#[tokio::test]
async fn both_ingresses_meter_exactly_what_anthropic_reports() {
    let anthropic = Mock::spawn_with(&["--api-key", MOCK_KEY]);
    let openai = Mock::spawn();
    let gw = Gateway::spawn(&routes(&anthropic, &openai)).await;
    let cached = json!([{"type": "text", "text": "A long shared preamble. ".repeat(50),
                         "cache_control": {"type": "ephemeral"}}]);
    let tools = json!([{"name": "f", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    let mut sent = 0;
    for i in 0..500 {
        let stream = i % 2 == 0;
        let (path, body) = if i % 4 < 2 {
            let mut body = json!({"model": "claude-haiku-4-5", "stream": stream,
                                  "messages": [{"role": "user", "content": format!("question {i}")}]});
            if i % 3 == 0 {
                body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
            }
            ("/v1/chat/completions", body)
        } else {
            let mut body = json!({"model": "claude-haiku-4-5", "max_tokens": 20 + i, "stream": stream,
                                  "system": cached,
                                  "messages": [{"role": "user", "content": format!("question {i}")}]});
            if i % 3 == 0 {
                body["tools"] = tools.clone();
            }
            ("/v1/messages", body)
        };
        let resp = common::client()
            .post(gw.url(path))
            .header("x-api-key", common::MASTER_KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} {body}");
        resp.bytes().await.unwrap();
        sent += 1;
    }
    let upstream = anthropic.stats().await;
    assert_eq!(upstream["requests"]["messages"], sent);
    assert!(
        upstream["cache_read_tokens"].as_u64().unwrap() > 0,
        "{upstream}"
    );
    assert_metered_as_upstream(&gw, &anthropic).await;
}

#[tokio::test]
async fn the_messages_ingress_answers_in_anthropic_s_shape() {
    let anthropic = Mock::spawn_with(&["--api-key", MOCK_KEY]);
    let openai = Mock::spawn();
    let gw = Gateway::spawn(&routes(&anthropic, &openai)).await;
    let send = |model: &str, key: &str| {
        common::client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .send()
    };
    for (model, key, status, kind) in [
        (
            "claude-haiku-4-5",
            "tg_wrong_key_0123456789abcdef",
            401,
            "authentication_error",
        ),
        (
            "gpt-4o-mini",
            common::MASTER_KEY,
            400,
            "invalid_request_error",
        ),
        ("claude-9", common::MASTER_KEY, 404, "not_found_error"),
        // The upstream's own error passes as Anthropic sent it.
        ("overloaded", common::MASTER_KEY, 529, "overloaded_error"),
    ] {
        let resp = send(model, key).await.unwrap();
        assert_eq!(resp.status(), status, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
    }
}
