//! What operators run on, against real processes: the headers every response carries, the
//! metric families after a mixed workload (and that the shipped Grafana dashboard and
//! Prometheus alert rules use only names and labels that exist), readiness and the
//! draining shutdown, the JSON access log without secrets, and the scaled topology of the
//! compose file (two proxies, one admin API, shared PostgreSQL and Redis) as processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use common::{Gateway, MASTER_KEY, Mock, SharedStores, chat_body, client};
use serde_json::{Value, json};

const SECRET: &str = "operations-test-secret-0123456789-abcdefgh";

/// `gpt-4o-mini` (priced) on the mock, `slow` answering after 300 ms, `broken` answering 500
/// (its fallback `gpt-4o-mini` then serves), `unreachable` on a port nobody listens on.
fn routes(mock: &Mock) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = closed.local_addr().unwrap();
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{url}'}}\n  - {{name: down, kind: openai-compatible, base_url: 'http://{closed}/v1'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream}}]\n    pricing: {{input_per_million: 0.15, output_per_million: 0.60}}\n  - name: slow\n    deployments: [{{provider: upstream, model: 'gpt-4o-mini@latency=300ms'}}]\n  - name: broken\n    deployments: [{{provider: upstream, model: 'gpt-4o-mini@status=500'}}]\n    fallbacks: [gpt-4o-mini]\n  - name: unreachable\n    deployments: [{{provider: down}}]\n  - name: text-embedding-3-small\n    deployments: [{{provider: upstream}}]\n",
        url = mock.url()
    )
}

fn overhead_ms(resp: &reqwest::Response) -> f64 {
    resp.headers()
        .get("x-tollgate-overhead-ms")
        .unwrap_or_else(|| panic!("no x-tollgate-overhead-ms on {}", resp.status()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_response_carries_its_request_id_and_the_gateway_s_own_time() {
    let mock = Mock::spawn();
    let gw = Gateway::spawn(&routes(&mock)).await;
    // The client's id is kept; the slow upstream's 300 ms are not the gateway's.
    let started = Instant::now();
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "client-chosen-id-1")
        .json(&chat_body("slow", false))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-id-1");
    assert!(took >= Duration::from_millis(300));
    let own = overhead_ms(&resp);
    assert!(
        (0.0..300.0).contains(&own),
        "the upstream's wait counted as overhead: {own} ms"
    );
    // Streams, the model list, and the gateway's own refusals carry both too.
    let stream = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    let models = gw.get("/v1/models").send().await.unwrap();
    let unknown = gw
        .post("/v1/chat/completions")
        .json(&chat_body("no-such-model", false))
        .send()
        .await
        .unwrap();
    let bad_key = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("tg_not_a_key")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    for (resp, status) in [(stream, 200), (models, 200), (unknown, 404), (bad_key, 401)] {
        assert_eq!(resp.status(), status);
        assert!(resp.headers()["x-request-id"].to_str().unwrap().len() >= 8);
        assert!(overhead_ms(&resp) >= 0.0);
    }
}

/// Parsed `/metrics`: each family's type and the label names its samples carry.
struct Exposition {
    types: HashMap<String, String>,
    labels: HashMap<String, BTreeSet<String>>,
    samples: HashMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = HashMap::new();
        let mut labels: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            samples.insert(series.to_string(), value.parse().unwrap_or(f64::NAN));
            let (name, label_text) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            let keys = labels.entry(family.to_string()).or_default();
            for pair in label_text.split("\",").filter(|p| !p.is_empty()) {
                keys.insert(pair.split('=').next().unwrap().to_string());
            }
        }
        Exposition {
            types,
            labels,
            samples,
        }
    }

    /// The value of one series, written as in the exposition.
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

/// Metric names in a PromQL expression, each with the label names its selector uses.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tollgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let mut keys = Vec::new();
        if let Some(body) = tail[end..].strip_prefix('{') {
            let close = body.find('}').unwrap();
            for matcher in body[..close].split(',') {
                let key = matcher
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap()
                    .trim()
                    .to_string();
                if !key.is_empty() {
                    keys.push(key);
                }
            }
        }
        found.push((name.to_string(), keys));
        rest = &tail[end..];
    }
    found
}

/// Label names of every `by (…)` in an expression.
fn grouped_by(expr: &str) -> Vec<String> {
    expr.match_indices("by (")
        .flat_map(|(at, _)| {
            let inner = &expr[at + 4..];
            inner[..inner.find(')').unwrap()]
                .split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The PromQL expressions of the shipped dashboard and alert rules.
fn shipped_expressions() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docker/grafana/dashboards/tollgate.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    // `expr: …` or `expr: |` with the indented lines below it.
    let alerts = std::fs::read_to_string(root.join("docker/prometheus/alerts.yml")).unwrap();
    let mut lines = alerts.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        if value.trim() != "|" {
            exprs.push(value.trim().to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if next.len() - next.trim_start().len() <= indent {
                break;
            }
            block.push_str(next.trim());
            block.push(' ');
            lines.next();
        }
        exprs.push(block);
    }
    assert!(exprs.len() > 30, "{exprs:?}");
    exprs
}

#[tokio::test]
async fn after_a_mixed_workload_every_family_is_exported_and_the_dashboard_resolves() {
    let mock = Mock::spawn();
    let stores = SharedStores::create("metrics").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn_in_env(dir.path(), &routes(&mock), "", &stores.envs(SECRET)).await;
    let (status, key) = gw
        .admin(
            "POST",
            "/api/keys",
            Some(json!({ "name": "mixed", "rpm_limit": 4 })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_string();
    let send = |model: &'static str, stream: bool, key: String| {
        let url = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .json(&chat_body(model, stream))
                .send()
                .await
                .unwrap()
        }
    };
    // Issued key: two chats and a stream (key cache, Redis quota), a refusal after its 4 rpm.
    assert_eq!(
        send("gpt-4o-mini", false, secret.clone()).await.status(),
        200
    );
    let stream = send("gpt-4o-mini", true, secret.clone()).await;
    assert_eq!(stream.status(), 200);
    stream.text().await.unwrap();
    assert_eq!(
        send("gpt-4o-mini", false, secret.clone()).await.status(),
        200
    );
    assert_eq!(
        send("gpt-4o-mini", false, secret.clone()).await.status(),
        200
    );
    assert_eq!(
        send("gpt-4o-mini", false, secret.clone()).await.status(),
        429
    );
    // Master key: an upstream 500 (its fallback serves), an unreachable upstream, an
    // embedding, an unknown model; a wrong key.
    let master = MASTER_KEY.to_string();
    assert_eq!(send("broken", false, master.clone()).await.status(), 200);
    assert_eq!(
        send("unreachable", false, master.clone()).await.status(),
        502
    );
    assert_eq!(
        send("no-such-model", false, master.clone()).await.status(),
        404
    );
    let embedding = gw
        .post("/v1/embeddings")
        .json(&json!({ "model": "text-embedding-3-small", "input": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(embedding.status(), 200);
    assert_eq!(
        send("gpt-4o-mini", false, "tg_wrong".into()).await.status(),
        401
    );

    // The usage events are written within the writer's one-second batching.
    let mut metrics = Exposition::parse(&gw.metrics_text().await);
    for _ in 0..100 {
        if metrics
            .samples
            .get("tollgate_usage_events_total{outcome=\"written\"}")
            .is_some_and(|n| *n >= 6.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = Exposition::parse(&gw.metrics_text().await);
    }
    let families = [
        "tollgate_requests_total",
        "tollgate_request_duration_seconds",
        "tollgate_overhead_seconds",
        "tollgate_upstream_first_byte_seconds",
        "tollgate_requests_in_flight",
        "tollgate_streams_in_flight",
        "tollgate_tokens_total",
        "tollgate_cost_micro_usd_total",
        "tollgate_upstream_errors_total",
        "tollgate_upstream_connections_total",
        "tollgate_upstream_retries_total",
        "tollgate_fallbacks_total",
        "tollgate_deployment_state",
        "tollgate_deployment_in_flight",
        "tollgate_deployment_ttfb_seconds",
        "tollgate_quota_rejections_total",
        "tollgate_quota_check_seconds",
        "tollgate_quota_store_errors_total",
        "tollgate_redis_seconds",
        "tollgate_redis_errors_total",
        "tollgate_database_seconds",
        "tollgate_database_errors_total",
        "tollgate_key_cache_lookups_total",
        "tollgate_key_cache_evictions_total",
        "tollgate_usage_events_total",
        "tollgate_usage_queue_depth",
        "tollgate_usage_batch_size",
        "tollgate_usage_spill_bytes",
        "tollgate_config_reloads_total",
    ];
    for family in families {
        assert!(metrics.types.contains_key(family), "{family} is missing");
    }
    // Sensible values for what happened.
    assert!(metrics.value("tollgate_overhead_seconds_count{endpoint=\"chat_completions\"}") >= 7.0);
    assert!(
        metrics.value("tollgate_cost_micro_usd_total{model=\"gpt-4o-mini\",provider=\"upstream\"}")
            > 0.0
    );
    assert!(metrics.value("tollgate_key_cache_lookups_total{result=\"hit\"}") >= 3.0);
    assert!(metrics.value("tollgate_key_cache_lookups_total{result=\"miss\"}") >= 1.0);
    assert!(metrics.value("tollgate_database_seconds_count{operation=\"key_lookup\"}") >= 1.0);
    assert!(metrics.value("tollgate_redis_seconds_count{operation=\"reserve\"}") >= 1.0);
    assert_eq!(
        metrics.value("tollgate_redis_errors_total{operation=\"reserve\"}"),
        0.0
    );
    assert!(metrics.value("tollgate_usage_batch_size_count") >= 1.0);
    assert_eq!(metrics.value("tollgate_usage_spill_bytes"), 0.0);
    assert_eq!(metrics.value("tollgate_streams_in_flight"), 0.0);
    assert!(
        metrics.value("tollgate_quota_rejections_total{dimension=\"rate_limit_requests\"}") >= 1.0
    );
    assert!(
        metrics
            .value("tollgate_upstream_connections_total{provider=\"upstream\",reused=\"false\"}")
            >= 1.0
    );

    // Every name and label the dashboard and the alert rules use exists.
    for expr in shipped_expressions() {
        let used = selectors(&expr);
        assert!(
            !used.is_empty() || expr.starts_with("up{"),
            "no Tollgate metric in {expr}"
        );
        for (name, keys) in &used {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| metrics.types.get(*b).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            let known = metrics
                .labels
                .get(base)
                .unwrap_or_else(|| panic!("{name} in `{expr}` is not exported"));
            for key in keys
                .iter()
                .filter(|k| !["instance", "job"].contains(&k.as_str()))
            {
                assert!(known.contains(key), "{name} has no label {key} (`{expr}`)");
            }
            for key in grouped_by(&expr)
                .iter()
                .filter(|k| !["instance", "job", "le"].contains(&k.as_str()))
            {
                assert!(
                    known.contains(key),
                    "{name} has no label {key} to group by (`{expr}`)"
                );
            }
        }
    }
}

#[tokio::test]
async fn readyz_reports_each_check() {
    let mock = Mock::spawn();
    let stores = SharedStores::create("ready").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn_in_env(dir.path(), &routes(&mock), "", &stores.envs(SECRET)).await;
    let resp = client()
        .get(format!("http://{}/readyz", gw.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(
        report,
        json!({"status": "ready", "checks": {
            "config": "loaded", "proxy_listener": "ok", "database": "ok",
            "redis": "ok", "key_cache": "warm"
        }})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_stops_as_soon_as_nothing_is_in_flight() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::spawn_in(
        dir.path(),
        &routes(&mock),
        "  shutdown_grace: 60s\n  drain_delay: 1500ms\n",
    )
    .await;
    // A stream of about 3 s is under way when SIGTERM arrives.
    let mut stream = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=30,itl=100ms")
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let pid = gw.proc.pid();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // /readyz fails at once, while requests are still served (told to close).
    let ready = client()
        .get(format!("http://{}/readyz", gw.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    let during = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_millis(1500),
        "too slow to test the drain"
    );
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers()["connection"], "close");
    // After the drain delay, new requests are refused with a retryable 503.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(signalled.elapsed())).await;
    let after = gw
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let error = common::expect_error(after, 503).await;
    assert_eq!(error["code"], "server_shutting_down");
    // The stream under way is not cut: it ends with [DONE].
    let mut rest = String::from_utf8_lossy(&first).to_string();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("data: [DONE]"), "{rest}");
    // And the process ends then, not when the 60 s grace period would.
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.proc.wait();
        drop(gw);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "waited for the grace period: {:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn the_json_access_log_names_the_request_and_never_a_secret() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let provider_key = "sk-provider-secret-do-not-log-4711";
    let envs = [
        ("RUST_LOG", "trace"),
        ("TOLLGATE_LOG_FORMAT", "json"),
        ("UPSTREAM_KEY", provider_key),
    ];
    let routes = routes(&mock).replacen("'}", "', api_key: '${UPSTREAM_KEY}'}", 1);
    let gw = Gateway::spawn_logged(dir.path(), &routes, "", &envs, &log).await;
    let mut secrets = vec![MASTER_KEY.to_string(), provider_key.to_string()];
    // An issued key, rotated; an admin user with a password who logs in; a stored credential.
    let (_, key) = gw
        .admin("POST", "/api/keys", Some(json!({ "name": "logged" })))
        .await;
    let id = key["id"].as_str().unwrap().to_string();
    secrets.push(key["secret"].as_str().unwrap().to_string());
    let (status, rotated) = gw
        .admin("POST", &format!("/api/keys/{id}/rotate"), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    secrets.push(rotated["secret"].as_str().unwrap().to_string());
    let password = "correct horse battery staple 42";
    let (status, _) = gw
        .admin(
            "POST",
            "/api/users",
            Some(json!({ "email": "ops@example.com", "role": "admin", "password": password })),
        )
        .await;
    assert_eq!(status, 201);
    secrets.push(password.to_string());
    let login = client()
        .post(format!("http://{}/api/auth/login", gw.admin))
        .json(&json!({ "email": "ops@example.com", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    secrets.push(token.clone());
    let stored = "sk-stored-credential-never-logged-0042";
    let (status, _) = gw
        .admin(
            "POST",
            "/api/providers",
            Some(json!({ "name": "vault", "kind": "openai-compatible", "api_key": stored })),
        )
        .await;
    assert_eq!(status, 201);
    secrets.push(stored.to_string());
    // Requests with each credential, a wrong key that looks real, and a bad password.
    for key in [&secrets[0], &secrets[3]] {
        let (status, _) = gw.chat_as(key, "gpt-4o-mini").await;
        assert_eq!(status, 200);
    }
    let wrong = "tg_wrong_but_plausible_key_0123456789";
    secrets.push(wrong.to_string());
    assert_eq!(gw.chat_as(wrong, "gpt-4o-mini").await.0, 401);
    let bad_login = client()
        .post(format!("http://{}/api/auth/login", gw.admin))
        .json(&json!({ "email": "ops@example.com", "password": "wrong password 123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), 401);
    secrets.push("wrong password 123".to_string());

    // Access lines are JSON with the request's facts; the log is flushed within moments.
    let deadline = Instant::now() + Duration::from_secs(10);
    let access: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| l.contains("tollgate::access"))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let served = access
        .iter()
        .find(|l| l["key"].as_str().is_some_and(|k| k.starts_with("key_")))
        .unwrap_or_else(|| panic!("no access line of the issued key: {access:?}"));
    for field in [
        "request_id",
        "status",
        "model",
        "deployment",
        "latency_ms",
        "overhead_ms",
        "prompt_tokens",
        "completion_tokens",
        "cost_micro_usd",
    ] {
        assert!(!served[field].is_null(), "{field} missing in {served}");
    }
    assert_eq!(served["deployment"], "upstream/gpt-4o-mini");
    let refused = access
        .iter()
        .find(|l| l["status"] == 401)
        .unwrap_or_else(|| panic!("no access line of the refusal: {access:?}"));
    assert_eq!(refused["error"], "invalid_api_key");

    drop(gw);
    let text = std::fs::read_to_string(&log).unwrap();
    // The most verbose level was on: what libraries print at it was written too.
    assert!(
        text.contains("\"level\":\"TRACE\"") || text.contains("\"level\":\"DEBUG\""),
        "no debug or trace lines: {text}"
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the log: {secret}"
        );
    }
}

#[tokio::test]
async fn two_proxies_and_an_admin_share_quotas_and_revocations() {
    let mock = Mock::spawn();
    let stores = SharedStores::create("topology").await;
    let envs = stores.envs(SECRET);
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let admin = Gateway::spawn_admin(dirs[0].path(), &routes(&mock), &envs).await;
    // The usage events' partition two months ahead goes (the admin made it while migrating);
    // a proxy makes it again at start.
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&stores.db.url).await.unwrap();
    let ahead = "usage_events_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') \
                 + interval '2 months', '\"y\"YYYY\"m\"MM')";
    let exists = format!("SELECT to_regclass('{ahead}) IS NOT NULL");
    let partition_ready = |db: &sea_orm::DatabaseConnection| {
        let sql = exists.clone();
        let db = db.clone();
        async move {
            db.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<bool>(0)
            .unwrap()
        }
    };
    assert!(partition_ready(&db).await);
    db.execute_unprepared(&format!(
        "DO $$ BEGIN EXECUTE 'DROP TABLE ' || ('{ahead}); END $$"
    ))
    .await
    .unwrap();
    assert!(!partition_ready(&db).await);
    let a = Gateway::spawn_in_env(dirs[1].path(), &routes(&mock), "", &envs).await;
    let b = Gateway::spawn_in_env(dirs[2].path(), &routes(&mock), "", &envs).await;
    // Every process's scrape target and readiness answer.
    for process in [&admin, &a, &b] {
        let ready = client()
            .get(format!("http://{}/readyz", process.metrics))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let metrics = client()
            .get(format!("http://{}/metrics", process.metrics))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
    }
    let made = Instant::now();
    while !partition_ready(&db).await {
        assert!(
            made.elapsed() < Duration::from_secs(10),
            "no proxy made the partition"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A key made on the admin, limited to 4 requests a minute in all.
    let (status, key) = admin
        .admin(
            "POST",
            "/api/keys",
            Some(json!({ "name": "shared", "rpm_limit": 4 })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for proxy in [&a, &b, &a, &b, &a, &b] {
        statuses.push(proxy.chat_as(&secret, "gpt-4o-mini").await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "the limit is global"
    );
    // A second key, revoked on the admin: both proxies refuse it within a second.
    let (_, other) = admin
        .admin("POST", "/api/keys", Some(json!({ "name": "revoked" })))
        .await;
    let other_secret = other["secret"].as_str().unwrap().to_string();
    assert_eq!(a.chat_as(&other_secret, "gpt-4o-mini").await.0, 200);
    assert_eq!(b.chat_as(&other_secret, "gpt-4o-mini").await.0, 200);
    let (status, _) = admin
        .admin(
            "POST",
            &format!("/api/keys/{}/revoke", other["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let revoked = Instant::now();
    for proxy in [&a, &b] {
        loop {
            let (status, _) = proxy.chat_as(&other_secret, "gpt-4o-mini").await;
            if status == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "a proxy still accepted the key a second after revocation"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
