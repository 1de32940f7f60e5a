//! Key quotas through the real gateway: requests, tokens and concurrency per key, budgets,
//! the 429s and headers clients see, exactness across two replicas sharing Redis, and what
//! happens when Redis is unreachable (fail-open, fail-closed, nothing hangs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Gateway, Mock, PgDatabase, chat_body, client,
    relay::{Flow, Relay},
};
use serde_json::{Value, json};

const SECRET: &str = "quota-test-secret-0123456789-abcdefghijkl";

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A route to `mock` with prices, so requests cost money.
fn priced_route(mock: &Mock) -> String {
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream}}]\n    pricing: {{input_per_million: 2.5, output_per_million: 10}}\n",
        mock.url()
    )
}

async fn issue(gateway: &Gateway, limits: Value) -> String {
    let mut body = json!({ "name": "limited" });
    body.as_object_mut()
        .unwrap()
        .extend(limits.as_object().unwrap().clone());
    let (status, key) = gateway.admin("POST", "/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_string()
}

async fn chat(gateway: &Gateway, key: &str, body: Value, mock: &str) -> reqwest::Response {
    client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock", mock)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn requests_per_minute_are_enforced_with_openai_headers() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&priced_route(&mock)).await;
    let key = issue(&gateway, json!({ "rpm_limit": 3, "tpm_limit": 100000 })).await;
    for i in 0..3 {
        let resp = chat(&gateway, &key, chat_body("gpt-4o-mini", false), "").await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            h["x-ratelimit-remaining-requests"],
            (2 - i).to_string().as_str()
        );
        assert!(
            h["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s')
        );
        assert_eq!(h["x-ratelimit-limit-tokens"], "100000");
        assert!(h.contains_key("x-ratelimit-remaining-tokens"));
    }
    let refused = chat(&gateway, &key, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(refused.headers()["x-should-retry"], "true");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_requests");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // The master key and keys without limits are not limited.
    let free = issue(&gateway, json!({})).await;
    for _ in 0..5 {
        let resp = chat(&gateway, &free, chat_body("gpt-4o-mini", false), "").await;
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn concurrency_and_tokens_are_limited_while_requests_run() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&priced_route(&mock)).await;
    // Two slots; requests that take 600 ms.
    let key = issue(&gateway, json!({ "concurrency_limit": 2 })).await;
    let calls = (0..6).map(|_| {
        chat(
            &gateway,
            &key,
            chat_body("gpt-4o-mini", false),
            "latency=600ms",
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    // Finished requests give their slots back.
    assert_eq!(
        chat(&gateway, &key, chat_body("gpt-4o-mini", false), "")
            .await
            .status(),
        200
    );

    // Tokens: each request reserves its prompt estimate plus max_tokens (100).
    let key = issue(&gateway, json!({ "tpm_limit": 300 })).await;
    let mut body = chat_body("gpt-4o-mini", false);
    body["max_tokens"] = json!(100);
    let calls = (0..4).map(|_| chat(&gateway, &key, body.clone(), "latency=600ms"));
    let responses = futures_util::future::join_all(calls).await;
    let mut codes = Vec::new();
    for resp in responses {
        if resp.status() == 200 {
            codes.push("ok".to_string());
        } else {
            codes.push(error_code(resp).await);
        }
    }
    assert_eq!(codes.iter().filter(|c| *c == "ok").count(), 2, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "rate_limit_tokens").count(),
        2,
        "{codes:?}"
    );
    // A request that could never fit says so, without a retry-after.
    let mut huge = chat_body("gpt-4o-mini", false);
    huge["max_tokens"] = json!(5000);
    let refused = chat(&gateway, &key, huge, "").await;
    assert_eq!(refused.status(), 429);
    assert!(!refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["x-should-retry"], "false");
}

#[tokio::test]
async fn budgets_are_never_overspent() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&priced_route(&mock)).await;
    // 2,000 micro-USD a day; each request reserves prompt + 50 completion tokens.
    let budget = 2_000;
    let key = issue(
        &gateway,
        json!({ "budget_micro_usd": budget, "budget_period": "day" }),
    )
    .await;
    let mut body = chat_body("gpt-4o-mini", false);
    body["max_tokens"] = json!(50);
    let mut spent = 0i64;
    let mut served = 0;
    loop {
        let resp = chat(&gateway, &key, body.clone(), "").await;
        if resp.status() == 429 {
            assert_eq!(resp.headers()["x-should-retry"], "false");
            let err: Value = resp.json().await.unwrap();
            assert_eq!(err["error"]["code"], "budget_exceeded");
            assert_eq!(err["error"]["type"], "insufficient_quota");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("resets at"),
                "{err}"
            );
            break;
        }
        assert_eq!(resp.status(), 200);
        let reply: Value = resp.json().await.unwrap();
        let (p, c) = (
            reply["usage"]["prompt_tokens"].as_i64().unwrap(),
            reply["usage"]["completion_tokens"].as_i64().unwrap(),
        );
        // 2.5 and 10 USD per million tokens, in micro-USD, rounded up.
        spent += (p * 2_500_000 + c * 10_000_000 + 999_999) / 1_000_000;
        served += 1;
        assert!(served < 1000, "the budget never ran out");
    }
    assert!(served > 1, "served {served}");
    assert!(spent <= budget, "spent {spent} of {budget}");
}

#[tokio::test]
async fn two_replicas_sharing_redis_admit_exactly_the_limit() {
    let db = PgDatabase::create("quota").await;
    let redis = redis_url();
    let prefix = format!("tgtest{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_REDIS_URL", redis.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
        ("TOLLGATE_SECRET_KEY", SECRET),
    ];
    let mock = Mock::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::spawn_in_env(dir_a.path(), &priced_route(&mock), "", &envs).await;
    let b = Gateway::spawn_in_env(dir_b.path(), &priced_route(&mock), "", &envs).await;
    let key = issue(&a, json!({ "rpm_limit": 20 })).await;

    let calls = (0..60).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        chat(gateway, &key, chat_body("gpt-4o-mini", false), "")
    });
    let responses = futures_util::future::join_all(calls).await;
    let mut ok = 0;
    let mut limited = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(resp.headers().contains_key("retry-after"));
                assert_eq!(error_code(resp).await, "rate_limit_requests");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (20, 40));

    // Concurrency and tokens are shared the same way: three slots for requests of 600 ms.
    let key = issue(&a, json!({ "concurrency_limit": 3 })).await;
    let calls = (0..10).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        chat(
            gateway,
            &key,
            chat_body("gpt-4o-mini", false),
            "latency=600ms",
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );

    // Each request reserves its prompt estimate plus max_tokens 100: two fit in 300.
    let key = issue(&a, json!({ "tpm_limit": 300 })).await;
    let mut body = chat_body("gpt-4o-mini", false);
    body["max_tokens"] = json!(100);
    let calls = (0..6).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        chat(gateway, &key, body.clone(), "latency=600ms")
    });
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
}

async fn with_dead_redis(mode: &str) -> (Gateway, String, tempfile::TempDir, Mock) {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let envs = [("TOLLGATE_REDIS_URL", "redis://127.0.0.1:1")];
    let extra = format!("quota:\n  on_store_error: {mode}\n");
    let route = format!("{}{extra}", priced_route(&mock));
    let gateway = Gateway::spawn_in_env(dir.path(), &route, "", &envs).await;
    let key = issue(&gateway, json!({ "rpm_limit": 2 })).await;
    (gateway, key, dir, mock)
}

#[tokio::test]
async fn unreachable_redis_fails_open_under_the_local_limiter() {
    let (gateway, key, _dir, _mock) = with_dead_redis("fail_open").await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            chat(&gateway, &key, chat_body("gpt-4o-mini", false), "")
                .await
                .status()
                .as_u16(),
        );
    }
    // Served, but still limited per process; nothing waited long on the dead store.
    assert_eq!(statuses, [200, 200, 429]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("tollgate_quota_store_errors_total{handling=\"fail_open\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unreachable_redis_fails_closed_with_503() {
    let (gateway, key, _dir, _mock) = with_dead_redis("fail_closed").await;
    let resp = chat(&gateway, &key, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-should-retry"], "true");
    assert_eq!(error_code(resp).await, "service_unavailable");
    // Keys without limits and the master key do not need the quota store.
    let free = issue(&gateway, json!({})).await;
    assert_eq!(
        chat(&gateway, &free, chat_body("gpt-4o-mini", false), "")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_users_and_a_teams_limits_bind_all_their_keys() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&priced_route(&mock)).await;
    let (_, user) = gateway
        .admin("POST", "/api/users", Some(json!({ "email": "ana@example.com", "password": "long-enough-password", "role": "member" })))
        .await;
    let user_id = user["id"].as_i64().unwrap();
    let first = issue(&gateway, json!({ "user_id": user_id })).await;
    let second = issue(&gateway, json!({ "user_id": user_id, "rpm_limit": 10 })).await;
    // Both keys are cached before the user gets a limit: the change must reach them.
    for key in [&first, &second] {
        assert_eq!(
            chat(&gateway, key, chat_body("gpt-4o-mini", false), "")
                .await
                .status(),
            200
        );
    }
    let (status, body) = gateway
        .admin(
            "PATCH",
            &format!("/api/users/{user_id}"),
            Some(json!({ "limits": { "rpm_limit": 2 } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limits"]["rpm_limit"], 2);
    // Requests count against the user from now on: two fit, whichever key sends them.
    assert_eq!(
        chat(&gateway, &first, chat_body("gpt-4o-mini", false), "")
            .await
            .status(),
        200
    );
    let resp = chat(&gateway, &second, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(resp.status(), 200);
    // The headers show the tightest limit: the user's.
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    let refused = chat(&gateway, &first, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(refused.status(), 429);
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_requests");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your user account"),
        "{err}"
    );

    // A team's budget binds its keys the same way.
    let (_, team) = gateway
        .admin("POST", "/api/teams", Some(json!({ "name": "research" })))
        .await;
    let team_id = team["id"].as_i64().unwrap();
    let (status, _) = gateway
        .admin(
            "PATCH",
            &format!("/api/teams/{team_id}"),
            Some(json!({ "limits": { "budget_micro_usd": 0, "budget_period": "month" } })),
        )
        .await;
    assert_eq!(status, 200);
    let team_key = issue(&gateway, json!({ "team_id": team_id })).await;
    let refused = chat(&gateway, &team_key, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(refused.status(), 429);
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["code"], "budget_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your team"),
        "{err}"
    );
}

/// Spends a day budget until it is refused; returns how many requests were served.
async fn exhaust_budget(gateway: &Gateway, key: &str) -> u32 {
    let mut body = chat_body("gpt-4o-mini", false);
    body["max_tokens"] = json!(50);
    for served in 0..1000 {
        let resp = chat(gateway, key, body.clone(), "").await;
        if resp.status() == 429 {
            assert_eq!(error_code(resp).await, "budget_exceeded");
            return served;
        }
        assert_eq!(resp.status(), 200);
    }
    panic!("the budget never ran out");
}

async fn wait_for_events(gateway: &Gateway, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, usage) = gateway.admin("GET", "/api/usage", None).await;
        if usage["totals"]["requests"].as_u64().unwrap_or(0) >= u64::from(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "usage events never arrived: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn budgets_survive_a_restart_of_the_embedded_gateway() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::spawn_in(dir.path(), &priced_route(&mock), "").await;
    let key = issue(
        &gateway,
        json!({ "budget_micro_usd": 2000, "budget_period": "day" }),
    )
    .await;
    let served = exhaust_budget(&gateway, &key).await;
    // Every request is metered, the refused one too.
    wait_for_events(&gateway, served + 1).await;
    drop(gateway);

    // The in-process counters are gone; the spend is rebuilt from the usage events.
    let gateway = Gateway::spawn_in(dir.path(), &priced_route(&mock), "").await;
    let resp = chat(&gateway, &key, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(error_code(resp).await, "budget_exceeded");
}

#[tokio::test]
async fn budgets_are_rebuilt_when_redis_loses_them() {
    use fred::prelude::*;
    let db = PgDatabase::create("rebuild").await;
    let redis = redis_url();
    let prefix = format!("tgtest{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_REDIS_URL", redis.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
        ("TOLLGATE_SECRET_KEY", SECRET),
    ];
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::spawn_in_env(dir.path(), &priced_route(&mock), "", &envs).await;
    let key = issue(
        &gateway,
        json!({ "budget_micro_usd": 2000, "budget_period": "month" }),
    )
    .await;
    let served = exhaust_budget(&gateway, &key).await;
    wait_for_events(&gateway, served + 1).await;

    // Redis loses every quota key (a restart without persistence, an eviction).
    let client = Builder::from_config(Config::from_url(&redis).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let keys: Vec<String> = client
        .custom(fred::cmd!("KEYS"), vec![format!("{prefix}:q:*")])
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = client.del(keys).await.unwrap();

    let resp = chat(&gateway, &key, chat_body("gpt-4o-mini", false), "").await;
    assert_eq!(resp.status(), 429, "the lost spend was not rebuilt");
    assert_eq!(error_code(resp).await, "budget_exceeded");
    client.quit().await.unwrap();
}

/// A chat request with the master key (no client quotas): its status and JSON body.
async fn master_chat(gateway: &Gateway) -> (u16, Value) {
    common::send_chat(gateway.post("/v1/chat/completions")).await
}

#[tokio::test]
async fn deployment_limits_protect_upstream_accounts() {
    let (first, second) = (Mock::spawn(), Mock::spawn());
    let route = format!(
        "providers:\n  - {{name: one, kind: openai-compatible, base_url: '{}'}}\n  - {{name: two, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments:\n      - {{provider: one, rpm: 2}}\n      - {{provider: two, rpm: 3}}\n",
        first.url(),
        second.url()
    );
    let gateway = Gateway::spawn(&route).await;
    // Deployment limits bind every client, the master key too.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, err) = master_chat(&gateway).await;
        statuses.push(status);
        if status == 429 {
            assert_eq!(err["error"]["code"], "rate_limit_requests");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("upstream deployments"),
                "{err}"
            );
        }
    }
    // A full deployment is passed over for the other; only when both are full is it a 429.
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    assert_eq!(first.stats().await["requests_total"], 2);
    assert_eq!(second.stats().await["requests_total"], 3);
    // One client was refused; the deployments passed over on the way are not refusals.
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("tollgate_quota_rejections_total{dimension=\"rate_limit_requests\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_fallback_deployment_counts_against_its_own_limits() {
    let backup = Mock::spawn();
    // Nothing listens on `down`'s port: every request falls back to `backup` (weight 0:
    // used only when the others failed), whose account allows 2 requests a minute.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("http://{}/v1", down.local_addr().unwrap());
    drop(down);
    let route = format!(
        "providers:\n  - {{name: down, kind: openai-compatible, base_url: '{down_url}'}}\n  - {{name: backup, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments:\n      - {{provider: down, rpm: 100}}\n      - {{provider: backup, weight: 0, rpm: 2}}\n",
        backup.url()
    );
    let gateway = Gateway::spawn(&route).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = master_chat(&gateway).await;
        if status != 200 {
            // With the backup full, the answer is the 429 a full deployment gets.
            assert_eq!(body["error"]["code"], "rate_limit_requests", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("upstream deployments"),
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(backup.stats().await["requests_total"], 2);
}

/// Sends up to `n` requests of at most 20 completion tokens; returns whether none was
/// refused, and what the served ones cost (2.5 and 10 USD per million tokens, rounded up).
async fn spend(gateway: &Gateway, key: &str, n: usize) -> (bool, i64) {
    let mut body = chat_body("gpt-4o-mini", false);
    body["max_tokens"] = json!(20);
    let mut cost = 0;
    for _ in 0..n {
        let resp = chat(gateway, key, body.clone(), "").await;
        if resp.status() == 429 {
            return (false, cost);
        }
        assert_eq!(resp.status(), 200);
        let reply: Value = resp.json().await.unwrap();
        let (p, c) = (
            reply["usage"]["prompt_tokens"].as_i64().unwrap(),
            reply["usage"]["completion_tokens"].as_i64().unwrap(),
        );
        cost += (p * 2_500_000 + c * 10_000_000 + 999_999) / 1_000_000;
    }
    (true, cost)
}

// Multi-threaded: the relay must keep running while the test blocks on a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_never_lets_a_budget_be_overspent() {
    let target: std::net::SocketAddr = redis_url().trim_start_matches("redis://").parse().unwrap();
    let redis = Relay::start(target).await;
    let url = redis.url();
    let prefix = format!("tgtest{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_REDIS_URL", url.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
    ];
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::spawn_in_env(dir.path(), &priced_route(&mock), "", &envs).await;
    let budget = 3_000i64;
    let key = issue(
        &gateway,
        json!({ "budget_micro_usd": budget, "budget_period": "day" }),
    )
    .await;
    // Some spend through Redis, some while it is away (served under the local limiter)...
    let (_, mut spent) = spend(&gateway, &key, 4).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.set(Flow::Cut);
    let (open, during) = spend(&gateway, &key, 4).await;
    assert!(open, "refused during the outage");
    spent += during;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ...then Redis is back: the outage's spend must count against the budget.
    redis.set(Flow::Up);
    spent += spend(&gateway, &key, 1).await.1;
    tokio::time::sleep(Duration::from_secs(4)).await;
    spent += spend(&gateway, &key, 1000).await.1;
    assert!(spent <= budget, "spent {spent} of a {budget} budget");
    assert!(spent > budget / 2, "spent only {spent}");
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("tollgate_quota_store_errors_total{handling=\"fail_open\"}"),
        "the outage was not noticed"
    );
}
