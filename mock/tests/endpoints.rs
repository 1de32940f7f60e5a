//! OpenAI response shapes, streams and usage, over real HTTP.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_non_stream_shape_and_usage() {
    let server = start().await;
    let resp = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-request-id", "req-from-test")
        .json(&json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["x-request-id"], "req-from-test");
    assert_eq!(h["content-type"], "application/json");
    assert!(h.contains_key("openai-processing-ms"));
    for name in ["limit", "remaining", "reset"] {
        assert!(h.contains_key(format!("x-ratelimit-{name}-requests").as_str()));
        assert!(h.contains_key(format!("x-ratelimit-{name}-tokens").as_str()));
    }
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["service_tier"], "default");
    assert_eq!(v["system_fingerprint"], "fp_mock");
    let choice = &v["choices"][0];
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["refusal"].is_null());
    assert_eq!(choice["message"]["annotations"], json!([]));
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(
        content.split(' ').count(),
        16,
        "default 16 tokens, one word each: {content:?}"
    );
    // o200k with chat framing: 3 + (3 + role + content) per message.
    let usage = &v["usage"];
    assert_eq!(usage["prompt_tokens"], 15);
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(usage["total_tokens"], 31);
    assert_eq!(
        usage["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(
        usage["completion_tokens_details"]["accepted_prediction_tokens"],
        0
    );

    // Same (model, prompt) → same content; max_tokens below the default cuts it with "length".
    let mut body = chat_body("gpt-4o-mini", "hello there");
    let full = post_json(&server, "/v1/chat/completions", &body).await;
    body["max_tokens"] = json!(3);
    let short = post_json(&server, "/v1/chat/completions", &body).await;
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 3);
    let full_text = full["choices"][0]["message"]["content"].as_str().unwrap();
    let short_text = short["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(full_text.starts_with(short_text) && short_text.split(' ').count() == 3);
    // A different model or prompt gives different content.
    let other = post_json(
        &server,
        "/v1/chat/completions",
        &chat_body("gpt-4o", "hello there"),
    )
    .await;
    assert_ne!(
        other["choices"][0]["message"]["content"],
        full["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn chat_stream_reassembles_to_non_stream() {
    let server = start().await;
    let mut body = chat_body("gpt-4o-mini@tokens=7", "tell me a story");
    let plain = post_json(&server, "/v1/chat/completions", &body).await;
    body["stream"] = json!(true);
    let resp = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let chunks = chunk_payloads(&resp.text().await.unwrap());
    assert_eq!(
        chunks.len(),
        1 + 7 + 1,
        "role chunk, 7 token chunks, finish chunk"
    );
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(
            c["model"], "gpt-4o-mini",
            "the @directives are stripped from the echoed model"
        );
        assert!(
            c.get("usage").is_none(),
            "no usage key unless include_usage: {c}"
        );
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let text: String = chunks[1..8]
        .iter()
        .map(|c| {
            assert!(c["choices"][0]["finish_reason"].is_null());
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        text,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(chunks[8]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[8]["choices"][0]["finish_reason"], "stop");
    let stats = server.stats();
    assert_eq!(
        (
            stats.streams.started,
            stats.streams.completed,
            stats.streams.aborted
        ),
        (1, 1, 0)
    );
    assert_eq!(stats.completion_tokens, 14);
}

#[tokio::test]
async fn chat_stream_include_usage() {
    let server = start().await;
    let mut body = chat_body("gpt-4o-mini", "abcd");
    body["stream"] = json!(true);
    body["max_completion_tokens"] = json!(4);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = chunk_payloads(
        &post(&server, "/v1/chat/completions", &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    let (last, earlier) = chunks.split_last().unwrap();
    assert_eq!(earlier.len(), 1 + 4 + 1);
    for c in earlier {
        assert!(
            c.get("usage").is_some_and(Value::is_null),
            "earlier chunks carry usage: null: {c}"
        );
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(earlier[5]["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 3 + 3 + 1 + 1);
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert_eq!(last["usage"]["total_tokens"], 12);

    body["stream_options"] = json!({"include_usage": false});
    let chunks = chunk_payloads(
        &post(&server, "/v1/chat/completions", &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none() && !c["choices"].as_array().unwrap().is_empty())
    );
}

#[tokio::test]
async fn legacy_completions_stream_and_non_stream() {
    let server = start().await;
    let mut body =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 5});
    let v = post_json(&server, "/v1/completions", &body).await;
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(
        (choice["index"].clone(), choice["finish_reason"].clone()),
        (json!(0), json!("length"))
    );
    assert!(choice["logprobs"].is_null());
    let text = choice["text"].as_str().unwrap();
    assert_eq!(text.split(' ').count(), 5);
    // Legacy completions count the prompt's text alone: "Say this is a test" is 5 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 5);

    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = chunk_payloads(
        &post(&server, "/v1/completions", &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    let (last, earlier) = chunks.split_last().unwrap();
    assert_eq!(earlier.len(), 5 + 1);
    let streamed: String = earlier
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert!(
        earlier
            .iter()
            .all(|c| c["object"] == "text_completion" && c["usage"].is_null())
    );
    assert_eq!(earlier[5]["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 5);
}

fn unit_norm(v: &[f32]) -> bool {
    (v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3
}

#[tokio::test]
async fn embeddings_float_and_base64_with_dimensions() {
    let server = start().await;
    let float = post_json(
        &server,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["hello world", "other text"], "dimensions": 64, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], "text-embedding-3-small");
    // "hello world" and "other text" are two o200k tokens each; embeddings have no framing.
    assert_eq!(
        float["usage"],
        json!({"prompt_tokens": 4, "total_tokens": 4})
    );
    let data = float["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let vectors: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert!(vectors.iter().all(|v| v.len() == 64 && unit_norm(v)));
    assert_ne!(vectors[0], vectors[1]);

    // base64 (the Python SDK's default) decodes to the same little-endian f32 values.
    let b64 = post_json(
        &server,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "hello world", "dimensions": 64, "encoding_format": "base64"}),
    )
    .await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, vectors[0]);

    // Default dimensions and token-id inputs.
    let ids = post_json(
        &server,
        "/v1/embeddings",
        &json!({"model": "m", "input": [[1, 2, 3], [4]]}),
    )
    .await;
    assert_eq!(ids["data"][0]["embedding"].as_array().unwrap().len(), 1536);
    assert_eq!(ids["usage"]["prompt_tokens"], 4);

    let resp = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "m", "input": ""}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "m", "input": "x", "encoding_format": "hex"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn responses_non_stream() {
    let server = start().await;
    let v = post_json(
        &server,
        "/v1/responses",
        &json!({"model": "gpt-4.1-mini", "instructions": "be kind", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}
        ]}),
    )
    .await;
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4.1-mini");
    assert_eq!(v["instructions"], "be kind");
    let msg = &v["output"][0];
    assert_eq!(
        (
            msg["type"].clone(),
            msg["role"].clone(),
            msg["status"].clone()
        ),
        (json!("message"), json!("assistant"), json!("completed"))
    );
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(msg["content"][0]["annotations"], json!([]));
    assert_eq!(
        msg["content"][0]["text"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        16
    );
    // 3 + (3 + instructions) + (3 + input), counted with o200k.
    let usage = &v["usage"];
    assert_eq!(usage["input_tokens"], 14);
    assert_eq!(usage["output_tokens"], 16);
    assert_eq!(usage["total_tokens"], 30);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
}

#[tokio::test]
async fn responses_stream_events_end_with_completed() {
    let server = start().await;
    let mut body =
        json!({"model": "gpt-4.1-mini", "input": "write a haiku", "max_output_tokens": 100});
    let plain = post_json(&server, "/v1/responses", &body).await;
    body["stream"] = json!(true);
    let resp = post(&server, "/v1/responses", &body).await;
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let events = sse_events(&resp.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_deref().unwrap()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 16));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(kinds, expected);
    let payloads: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for (i, (p, kind)) in payloads.iter().zip(&kinds).enumerate() {
        assert_eq!(p["type"], *kind);
        assert_eq!(p["sequence_number"], i);
    }
    assert_eq!(payloads[0]["response"]["status"], "in_progress");
    let deltas: String = payloads[4..20]
        .iter()
        .map(|p| p["delta"].as_str().unwrap())
        .collect();
    let plain_text = plain["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(deltas, plain_text);
    assert_eq!(payloads[20]["text"], plain_text);
    let done = &payloads[23]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], plain_text);
    assert_eq!(done["usage"]["output_tokens"], 16);
    assert_eq!(
        done["usage"]["input_tokens"],
        plain["usage"]["input_tokens"]
    );
}

#[tokio::test]
async fn models_list_and_lookup() {
    let server = start().await;
    let list: Value = client()
        .get(url(&server, "/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(data.len() >= 3);
    assert!(data.iter().all(|m| m["object"] == "model"
        && m["owned_by"] == "tollgate-mock"
        && m["created"].is_u64()));
    let one: Value = client()
        .get(url(&server, "/v1/models/gpt-4o-mini"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "gpt-4o-mini");
    let missing = client()
        .get(url(&server, "/v1/models/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let v: Value = missing.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn bad_input_is_rejected_in_openai_shape() {
    let server = start().await;
    let c = client();
    let malformed = c
        .post(url(&server, "/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let v: Value = malformed.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not parse the JSON body")
    );

    let no_model = post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(no_model.status(), 400);
    assert_eq!(
        no_model.json::<Value>().await.unwrap()["error"]["param"],
        "model"
    );
    let no_messages = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(
        no_messages.json::<Value>().await.unwrap()["error"]["param"],
        "messages"
    );
    let wrong_type = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [], "max_tokens": "3"}),
    )
    .await;
    assert_eq!(wrong_type.status(), 400);

    let unknown = post(&server, "/v1/fine_tunes", &json!({})).await;
    assert_eq!(unknown.status(), 404);
    let v: Value = unknown.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Invalid URL (POST /v1/fine_tunes)");
    let wrong_method = c
        .get(url(&server, "/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    let stats = server.stats();
    assert_eq!(stats.rejected.bad_request, 4);
    assert_eq!(stats.rejected.not_found, 1);
    assert_eq!(stats.rejected.method_not_allowed, 1);
    assert_eq!(stats.requests.other, 2);
    assert_eq!(stats.completion_tokens, 0);
}
