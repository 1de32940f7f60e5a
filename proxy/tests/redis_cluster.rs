//! Quotas on a Redis Cluster (three primaries, made for each test from the machine's
//! `redis-server`): two replicas share it and admit exactly a key's limits; a request that
//! counts against scopes in different hash slots is taken scope by scope, and a refusal in
//! a later scope gives back what the earlier ones took; budgets, leased slices and key
//! revocations work there as on one Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Mock, PgDatabase, chat_body, client};
use serde_json::{Value, json};
use tollgate_testkit::RedisCluster;

const SECRET: &str = "cluster-test-secret-0123456789-abcdefghijk";

/// A route to `mock` with prices, so requests cost money.
fn priced_route(mock: &Mock) -> String {
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream}}]\n    pricing: {{input_per_million: 2.5, output_per_million: 10}}\n",
        mock.url()
    )
}

/// A cluster, a database and two gateway replicas sharing both.
struct Fleet {
    a: Gateway,
    b: Gateway,
    _mock: Mock,
    _dirs: [tempfile::TempDir; 2],
    _db: PgDatabase,
    _cluster: RedisCluster,
}

impl Fleet {
    async fn start(tag: &str) -> Fleet {
        let cluster = RedisCluster::start();
        let db = PgDatabase::create(tag).await;
        let prefix = format!("tgtest{}", fastrand::u64(..));
        let envs = [
            ("TOLLGATE_DATABASE_URL", db.url.as_str()),
            ("TOLLGATE_REDIS_URL", cluster.url.as_str()),
            ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
            ("TOLLGATE_SECRET_KEY", SECRET),
        ];
        let mock = Mock::spawn();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let route = priced_route(&mock);
        let a = Gateway::spawn_in_env(dirs[0].path(), &route, "", &envs).await;
        let b = Gateway::spawn_in_env(dirs[1].path(), &route, "", &envs).await;
        Fleet {
            a,
            b,
            _mock: mock,
            _dirs: dirs,
            _db: db,
            _cluster: cluster,
        }
    }

    /// Replica A for even `i`, B for odd.
    fn replica(&self, i: usize) -> &Gateway {
        if i.is_multiple_of(2) {
            &self.a
        } else {
            &self.b
        }
    }

    async fn issue(&self, body: Value) -> (String, String) {
        let (status, key) = self.a.admin("POST", "/api/keys", Some(body)).await;
        assert_eq!(status, 201, "{key}");
        (
            key["secret"].as_str().unwrap().to_string(),
            key["id"].as_str().unwrap().to_string(),
        )
    }
}

async fn chat(gateway: &Gateway, key: &str, mock: &str) -> reqwest::Response {
    client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock", mock)
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
}

/// Status and error body of a chat completion.
async fn outcome(gateway: &Gateway, key: &str) -> (u16, Value) {
    let resp = chat(gateway, key, "").await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// How many of `n` concurrent requests, spread over both replicas, were answered 200.
async fn admitted_at_once(fleet: &Fleet, key: &str, n: usize, mock: &str) -> usize {
    let calls = (0..n).map(|i| chat(fleet.replica(i), key, mock));
    let mut ok = 0;
    for resp in futures_util::future::join_all(calls).await {
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}: {}", resp.text().await.unwrap()),
        }
    }
    ok
}

#[tokio::test]
async fn two_replicas_on_a_cluster_admit_exactly_the_limits() {
    let fleet = Fleet::start("cluster_exact").await;

    let (key, _) = fleet.issue(json!({ "name": "rpm", "rpm_limit": 20 })).await;
    assert_eq!(admitted_at_once(&fleet, &key, 60, "").await, 20);

    // Three slots for requests of 2 s, shared by both replicas.
    let (key, _) = fleet
        .issue(json!({ "name": "slots", "concurrency_limit": 3 }))
        .await;
    assert_eq!(admitted_at_once(&fleet, &key, 10, "latency=2s").await, 3);

    // A budget of nothing: its spend counter is made on the cluster, then refuses.
    let (key, _) = fleet
        .issue(json!({ "name": "broke", "budget_micro_usd": 0, "budget_period": "month" }))
        .await;
    let (status, body) = outcome(&fleet.a, &key).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("budget_exceeded")),
        "{body}"
    );
}

/// A key's scope and its user's lie in different hash slots. The user's limit refuses
/// after the key's step was taken: that step is given back, so the key is left exactly
/// what the requests it admitted took.
#[tokio::test]
async fn a_refusal_in_a_later_scope_gives_back_the_earlier_steps() {
    let fleet = Fleet::start("cluster_steps").await;
    let (status, user) = fleet
        .a
        .admin(
            "POST",
            "/api/users",
            Some(json!({ "email": "li@example.com", "password": "long-enough-password", "role": "member" })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_i64().unwrap();
    let path = format!("/api/users/{user_id}");
    let limit_user = |rpm: u64| {
        fleet.a.admin(
            "PATCH",
            &path,
            Some(json!({ "limits": { "rpm_limit": rpm } })),
        )
    };
    let (status, body) = limit_user(5).await;
    assert_eq!(status, 200, "{body}");
    // The concurrency limit keeps the key's scope on the direct (per-request) reserve.
    let (key, _) = fleet
        .issue(json!({ "name": "li's", "user_id": user_id, "rpm_limit": 40, "concurrency_limit": 100 }))
        .await;

    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..12 {
        let (status, body) = outcome(fleet.replica(i), &key).await;
        match status {
            200 => admitted += 1,
            429 => {
                assert_eq!(body["error"]["code"], "rate_limit_requests", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("your user account"), "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(admitted, 5);

    // Lift the user's limit: the key admits what is left of its 40, not less.
    let (status, body) = limit_user(100_000).await;
    assert_eq!(status, 200, "{body}");
    let mut more = 0;
    loop {
        let (status, body) = outcome(&fleet.a, &key).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limit_requests", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("this API key"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
        more += 1;
        assert!(more <= 80, "the key admitted far more than its limit");
    }
    // The key's bucket drains 40 a minute meanwhile: what it refills may be admitted too.
    let refilled = (started.elapsed().as_secs_f64() * 40.0 / 60.0).ceil() as u32;
    let total = admitted + more;
    assert!(
        (40..=40 + refilled).contains(&total),
        "the key admitted {total} with a limit of 40 (+{refilled} refilled)"
    );
}

/// Large limits are leased from the cluster in slices, and a revocation on one replica
/// reaches the other through the cluster's pub/sub.
#[tokio::test]
async fn leases_and_revocations_work_on_a_cluster() {
    let fleet = Fleet::start("cluster_leases").await;
    let (key, id) = fleet
        .issue(json!({ "name": "busy", "rpm_limit": 60_000 }))
        .await;
    assert_eq!(admitted_at_once(&fleet, &key, 200, "").await, 200);
    // Later requests come from the slices the first ones asked for.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(admitted_at_once(&fleet, &key, 20, "").await, 20);
        let text = fleet.a.metrics_text().await;
        let leased = text
            .lines()
            .find(|l| l.starts_with("tollgate_quota_check_seconds_count{store=\"lease\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if leased > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request was admitted from a lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _) = fleet
        .a
        .admin("POST", &format!("/api/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    let revoked = Instant::now();
    loop {
        let (status, body) = outcome(&fleet.b, &key).await;
        if status == 401 {
            assert_eq!(body["error"]["code"], "api_key_revoked", "{body}");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "replica B still accepted the key after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
