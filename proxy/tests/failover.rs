//! Retries and cooldown against real processes: an upstream failure before anything
//! reached the client goes to the next deployment (429 and 5xx by default, first-byte
//! timeouts, connect failures); a request-side error (400) and a failure mid-stream never
//! do; failing deployments cool down and a probe brings them back. The mock's per-model
//! directives make each deployment fail in its own way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Mock, chat_body};
use serde_json::Value;

/// Two deployments of `gpt-4o-mini`: `a` on `mock_a` with the model `a_model` (its mock
/// directives), `b` on `mock_b`; `routing` YAML prepended.
fn two_deployments(
    mock_a: &Mock,
    a_model: &str,
    a_weight: u32,
    mock_b: &Mock,
    b_weight: u32,
    routing: &str,
) -> String {
    format!(
        "{routing}providers:\n  - {{name: a, kind: openai-compatible, base_url: '{}'}}\n  - {{name: b, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments:\n      - {{provider: a, model: '{a_model}', weight: {a_weight}}}\n      - {{provider: b, model: gpt-4o-mini, weight: {b_weight}}}\n",
        mock_a.url(),
        mock_b.url()
    )
}

async fn chat(gw: &Gateway, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

async fn requests(mock: &Mock) -> u64 {
    mock.stats().await["requests_total"].as_u64().unwrap()
}

#[tokio::test]
async fn a_500_goes_to_the_next_deployment_and_is_metered_once() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let gw = Gateway::spawn(&two_deployments(&a, "gpt-4o-mini@status=500", 1, &b, 0, "")).await;
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
    assert_eq!((requests(&a).await, requests(&b).await), (1, 1));
    // One usage event, of the deployment that answered.
    let outcomes = poll_outcomes(&gw, 1).await;
    assert_eq!(
        outcomes["by_status"],
        serde_json::json!([{"status": 200, "requests": 1}])
    );
}

/// The gateway's outcome counts once `n` requests are recorded.
async fn poll_outcomes(gw: &Gateway, n: u64) -> Value {
    for _ in 0..100 {
        let (status, body) = gw.admin("GET", "/api/usage/outcomes", None).await;
        assert_eq!(status, 200, "{body}");
        if body["requests"].as_u64() == Some(n) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} requests were never recorded");
}

#[tokio::test]
async fn a_400_is_the_request_s_fault_and_is_not_retried() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let gw = Gateway::spawn(&two_deployments(&a, "gpt-4o-mini@status=400", 1, &b, 0, "")).await;
    let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "x-tollgate-attempts"), "1");
    assert_eq!((requests(&a).await, requests(&b).await), (1, 0));
}

#[tokio::test]
async fn when_every_attempt_fails_the_client_gets_the_last_upstream_error_unchanged() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let config = two_deployments(&a, "gpt-4o-mini@status=503", 1, &b, 0, "").replace(
        "model: gpt-4o-mini, weight",
        "model: 'gpt-4o-mini@status=429,retry_after=7', weight",
    );
    let gw = Gateway::spawn(&config).await;
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(header(&headers, "retry-after"), "7");
    assert_eq!(
        body["error"]["type"], "requests",
        "the mock's own error body: {body}"
    );
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
}

#[tokio::test]
async fn retry_after_cools_a_deployment_down_for_that_long() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let gw = Gateway::spawn(&two_deployments(
        &a,
        "gpt-4o-mini@status=429,retry_after=4",
        1,
        &b,
        1,
        "",
    ))
    .await;
    // Until `a` has been tried once, it gets some of the traffic; then none for 4 s from
    // its 429, which came after `before_hit` and before `after_hit`.
    let mut before_hit = Instant::now();
    while requests(&a).await == 0 {
        before_hit = Instant::now();
        let (status, _, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
        assert_eq!(status, 200);
    }
    let after_hit = Instant::now();
    for _ in 0..20 {
        let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
        assert_eq!(header(&headers, "x-tollgate-attempts"), "1");
    }
    assert!(
        before_hit.elapsed() < Duration::from_secs(4),
        "the loop was too slow to show it"
    );
    assert_eq!(requests(&a).await, 1);
    // After the pause, `a` is probed again.
    tokio::time::sleep(Duration::from_millis(4100).saturating_sub(after_hit.elapsed())).await;
    for _ in 0..20 {
        chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    }
    assert_eq!(
        requests(&a).await,
        2,
        "one probe, which failed and cooled it again"
    );
}

#[tokio::test]
async fn a_hanging_deployment_hits_the_first_byte_timeout_and_falls_back() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    // Only `a` has a short first-byte timeout: a loaded machine must not time out the rest.
    let config = two_deployments(&a, "gpt-4o-mini@hang", 1, &b, 0, "").replacen(
        "'}",
        "', timeouts: {first_byte: 700ms, idle: 700ms}}",
        1,
    );
    let gw = Gateway::spawn(&config).await;
    let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    assert_eq!(requests(&b).await, 1);
}

#[tokio::test]
async fn a_reset_mid_stream_is_not_retried() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let gw = Gateway::spawn(&two_deployments(
        &a,
        "gpt-4o-mini@reset_after=3,tokens=20",
        1,
        &b,
        0,
        "",
    ))
    .await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap_or_default();
    assert!(
        text.contains("event: error") || !text.contains("[DONE]"),
        "{text}"
    );
    assert_eq!(
        requests(&b).await,
        0,
        "nothing is sent twice once output began"
    );
}

#[tokio::test]
async fn a_4_mib_body_is_sent_whole_to_the_next_deployment() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let config = two_deployments(&a, "gpt-4o-mini@status=502", 1, &b, 0, "").replace(
        "model: gpt-4o-mini, weight",
        "model: 'gpt-4o-mini@echo', weight",
    );
    let gw = Gateway::spawn(&config).await;
    let big = "x".repeat(4 << 20);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": big}],
    });
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["messages"][0]["content"].as_str().map(str::len),
        Some(4 << 20)
    );
    assert_eq!(echoed["model"], "gpt-4o-mini@echo");
}

#[tokio::test]
async fn failures_open_the_circuit_and_a_successful_probe_closes_it() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let routing = "routing:\n  cooldown: {failures: 3, window: 30s, duration: 1s}\n";
    let gw = Gateway::spawn(&two_deployments(
        &a,
        "gpt-4o-mini@status=503,first=3,seq=a",
        1,
        &b,
        0,
        routing,
    ))
    .await;
    for _ in 0..3 {
        let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    }
    // Open: `a` gets nothing.
    let (_, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(header(&headers, "x-tollgate-attempts"), "1");
    assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
    assert_eq!(requests(&a).await, 3);
    // The admin API shows it.
    let (status, routes) = gw.admin("GET", "/api/routes", None).await;
    assert_eq!(status, 200, "{routes}");
    let deployments = &routes["models"][0]["deployments"];
    assert_eq!(deployments[0]["state"], "cooling_down", "{routes}");
    assert_eq!(deployments[0]["last_error"], "status 503");
    assert_eq!(deployments[1]["state"], "healthy");
    assert_eq!(deployments[1]["in_flight"], 0);
    assert!(
        deployments[1]["ttfb_ms"].as_f64().is_some_and(|t| t > 0.0),
        "{routes}"
    );
    // After the cooldown the probe goes to `a`, which has recovered: closed again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "x-tollgate-deployment"),
            "a/gpt-4o-mini@status=503,first=3,seq=a"
        );
    }
}

#[tokio::test]
async fn a_model_whose_every_deployment_cools_down_answers_503_no_healthy_deployment() {
    let a = Mock::spawn();
    let config = format!(
        "routing:\n  cooldown: {{failures: 1, duration: 30s}}\nproviders:\n  - {{name: a, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: a, model: 'gpt-4o-mini@status=500'}}]\n",
        a.url()
    );
    let gw = Gateway::spawn(&config).await;
    let (status, _, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 500, "the upstream's own error, the only attempt");
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    let error = common::expect_error(resp, 503).await;
    assert_eq!(error["code"], "no_healthy_deployment");
    assert_eq!(requests(&a).await, 1);
}

#[tokio::test]
async fn a_fallback_model_takes_the_request_and_is_billed_at_its_own_price() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let config = format!(
        "providers:\n  - {{name: a, kind: openai-compatible, base_url: '{}'}}\n  - {{name: b, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o\n    deployments: [{{provider: a, model: 'gpt-4o@status=503'}}]\n    pricing: {{input_per_million: 2.50, output_per_million: 10.00}}\n    fallbacks: [mini]\n  - name: gpt-4o-mini\n    aliases: [mini]\n    deployments: [{{provider: b}}]\n    pricing: {{input_per_million: 0.15, output_per_million: 0.60}}\n",
        a.url(),
        b.url()
    );
    let gw = Gateway::spawn(&config).await;
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    // The fallback's upstream got its own model name.
    assert_eq!(b.requests().await[0]["model"], "gpt-4o-mini");
    let (prompt, completion) = (
        body["usage"]["prompt_tokens"].as_i64().unwrap(),
        body["usage"]["completion_tokens"].as_i64().unwrap(),
    );
    let cost = (prompt * 150_000 + completion * 600_000 + 999_999) / 1_000_000;
    poll_outcomes(&gw, 1).await;
    let (_, usage) = gw.admin("GET", "/api/usage?group_by=model", None).await;
    assert_eq!(usage["groups"][0]["group"], "gpt-4o-mini", "{usage}");
    assert_eq!(usage["groups"][0]["cost_micro_usd"], cost, "{usage}");
    assert_eq!(usage["totals"]["requests"], 1);
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("tollgate_fallbacks_total{fallback=\"gpt-4o-mini\",model=\"gpt-4o\"} 1"),
        "{metrics}"
    );
}

/// Sends `n` requests, `concurrency` at a time; how many each deployment served.
async fn spread(
    gw: &Gateway,
    n: usize,
    concurrency: usize,
) -> std::collections::HashMap<String, usize> {
    use futures_util::StreamExt;
    let served: Vec<String> = futures_util::stream::iter(0..n)
        .map(|_| async {
            let (status, headers, _) = chat(gw, &chat_body("gpt-4o-mini", false)).await;
            assert_eq!(status, 200);
            header(&headers, "x-tollgate-deployment").to_string()
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = std::collections::HashMap::new();
    for d in served {
        *counts.entry(d).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn weights_split_traffic_within_five_percent() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let gw = Gateway::spawn(&two_deployments(&a, "gpt-4o-mini", 3, &b, 1, "")).await;
    let counts = spread(&gw, 2000, 16).await;
    let share = counts["a/gpt-4o-mini"] as f64 / 2000.0;
    assert!((0.70..=0.80).contains(&share), "{counts:?}");
}

#[tokio::test]
async fn latency_prefers_the_fast_deployment_and_still_measures_the_slow_one() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    // Far apart, so that a loaded machine's noise cannot swap them.
    let config = two_deployments(&a, "gpt-4o-mini@latency=5ms", 1, &b, 1, "")
        .replace(
            "model: gpt-4o-mini, weight",
            "model: 'gpt-4o-mini@latency=500ms', weight",
        )
        .replace(
            "    deployments:\n",
            "    strategy: latency\n    deployments:\n",
        );
    let gw = Gateway::spawn(&config).await;
    let counts = spread(&gw, 200, 1).await;
    let fast = counts
        .get("a/gpt-4o-mini@latency=5ms")
        .copied()
        .unwrap_or(0);
    let slow = counts
        .get("b/gpt-4o-mini@latency=500ms")
        .copied()
        .unwrap_or(0);
    assert!(fast >= 4 * slow, "{counts:?}");
    assert!(slow >= 1, "the slow one is still probed: {counts:?}");
}

#[tokio::test]
async fn least_inflight_sends_new_requests_where_fewest_are_waiting() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let config = two_deployments(&a, "gpt-4o-mini@latency=3000ms", 1, &b, 1, "").replace(
        "    deployments:\n",
        "    strategy: least-inflight\n    deployments:\n",
    );
    let gw = Gateway::spawn(&config).await;
    use futures_util::StreamExt;
    // Staggered so each pick sees the ones before it in flight (`b` answers within the gap;
    // `a` holds each of its requests for 3 s, longer than the whole run).
    let served: Vec<String> = futures_util::stream::iter(0..20u64)
        .map(|i| {
            let gw = &gw;
            async move {
                tokio::time::sleep(Duration::from_millis(100 * i)).await;
                let (_, headers, _) = chat(gw, &chat_body("gpt-4o-mini", false)).await;
                header(&headers, "x-tollgate-deployment").to_string()
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let slow = served.iter().filter(|d| d.starts_with("a/")).count();
    assert!(
        slow <= 2,
        "the slow deployment took {slow} of 20: {served:?}"
    );
}

#[tokio::test]
async fn an_active_health_check_brings_a_cooled_deployment_back_without_a_client_request() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let routing = "routing:\n  cooldown: {failures: 1, duration: 60s}\n  health_check: {interval: 200ms, timeout: 1s}\n";
    let gw = Gateway::spawn(&two_deployments(
        &a,
        "gpt-4o-mini@status=503,first=1,seq=hc",
        1,
        &b,
        0,
        routing,
    ))
    .await;
    let (status, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    // Cooled for 60 s; the check of `GET /models` reopens it long before.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, routes) = gw.admin("GET", "/api/routes", None).await;
        if routes["models"][0]["deployments"][0]["state"] == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "never reopened: {routes}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checks = a.requests().await;
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/models"))),
        "{checks}"
    );
    // Traffic goes back to `a`, which has recovered.
    let (_, headers, _) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(
        header(&headers, "x-tollgate-deployment"),
        "a/gpt-4o-mini@status=503,first=1,seq=hc"
    );
    assert_eq!(header(&headers, "x-tollgate-attempts"), "1");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_not_the_deployment_s_failure() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let routing = "routing:\n  cooldown: {failures: 1, duration: 60s}\n";
    let gw = Gateway::spawn(&two_deployments(
        &a,
        "gpt-4o-mini@latency=2s",
        1,
        &b,
        0,
        routing,
    ))
    .await;
    for _ in 0..2 {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let gone = impatient
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(common::MASTER_KEY)
            .json(&chat_body("gpt-4o-mini", false))
            .send()
            .await;
        assert!(gone.is_err(), "the client gave up first");
    }
    // Give the gateway time to notice both departures.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, routes) = gw.admin("GET", "/api/routes", None).await;
    assert_eq!(
        routes["models"][0]["deployments"][0]["state"], "healthy",
        "{routes}"
    );
    assert_eq!(
        routes["models"][0]["deployments"][0]["in_flight"], 0,
        "{routes}"
    );
}

#[tokio::test]
async fn a_model_whose_deployments_all_cool_down_is_served_by_its_fallback() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    let config = format!(
        "routing:\n  cooldown: {{failures: 1, duration: 60s}}\nproviders:\n  - {{name: a, kind: openai-compatible, base_url: '{}'}}\n  - {{name: b, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o\n    deployments: [{{provider: a, model: 'gpt-4o@status=503'}}]\n    fallbacks: [gpt-4o-mini]\n  - name: gpt-4o-mini\n    deployments: [{{provider: b}}]\n",
        a.url(),
        b.url()
    );
    let gw = Gateway::spawn(&config).await;
    let (status, headers, _) = chat(&gw, &chat_body("gpt-4o", false)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    // `gpt-4o` is cooling down now: straight to the fallback, not a 503.
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
    assert_eq!(header(&headers, "x-tollgate-attempts"), "1");
    assert_eq!(requests(&a).await, 1);
}

#[tokio::test]
async fn a_fallback_model_skips_an_upstream_the_request_already_tried() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    // `gpt-4o-mini` routes to the same failing upstream first (weight 1), `b` only after.
    let config = format!(
        "providers:\n  - {{name: a, kind: openai-compatible, base_url: '{}'}}\n  - {{name: b, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o\n    retries: 1\n    deployments: [{{provider: a, model: 'gpt-4o@status=503'}}]\n    fallbacks: [gpt-4o-mini]\n  - name: gpt-4o-mini\n    deployments:\n      - {{provider: a, model: 'gpt-4o@status=503', weight: 1}}\n      - {{provider: b, weight: 0}}\n",
        a.url(),
        b.url()
    );
    let gw = Gateway::spawn(&config).await;
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-tollgate-deployment"), "b/gpt-4o-mini");
    assert_eq!(header(&headers, "x-tollgate-attempts"), "2");
    assert_eq!(
        requests(&a).await,
        1,
        "the failed upstream is not asked twice"
    );
}

#[tokio::test]
async fn a_retry_that_finds_no_deployment_after_all_answers_with_the_upstream_s_status() {
    let (a, b) = (Mock::spawn(), Mock::spawn());
    // `b`'s account takes one request a minute, and a request to `other` (the same upstream
    // account and model) has used it: the retry after `a`'s 503 finds `b` full.
    let config = two_deployments(&a, "gpt-4o-mini@status=503,retry_after=3", 1, &b, 0, "").replace(
        "model: gpt-4o-mini, weight: 0",
        "model: gpt-4o-mini, weight: 0, rpm: 1",
    ) + "  - name: other\n    deployments: [{provider: b, model: gpt-4o-mini, rpm: 1}]\n";
    let gw = Gateway::spawn(&config).await;
    let (status, _, body) = chat(&gw, &chat_body("other", false)).await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = chat(&gw, &chat_body("gpt-4o-mini", false)).await;
    // The upstream's 503 and its pause, not the gateway's own refusal of `b`.
    assert_eq!(status, 503, "{body}");
    assert_eq!(header(&headers, "retry-after"), "3");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a/gpt-4o-mini@status=503,retry_after=3) answered HTTP 503"),
        "{body}"
    );
    assert_eq!((requests(&a).await, requests(&b).await), (1, 1));
}
