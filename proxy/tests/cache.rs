//! The response cache, end to end against the mock's counters: repeats are hits (the mock
//! sees one request), streams are served from JSON and stream entries alike with the same
//! text, parameters that matter miss and those that do not hit, teams never share, the
//! client can bypass, identical misses in flight make one upstream request, hits are
//! metered as such, and with Redis the entries are shared by replicas and an outage is a
//! miss, never an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Gateway, Mock, client,
    relay::{Flow, Relay},
};
use futures_util::future::join_all;
use sea_orm::{Database, EntityTrait};
use serde_json::{Value, json};
use tollgate_core::store::entity::usage_event;

/// A model with caching on, routed to `mock`, priced so that costs show.
fn cached_route(mock: &Mock, extra: &str) -> String {
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}'}}\n\
         models:\n  - name: gpt-4o-mini\n    aliases: [mini]\n    deployments: [{{provider: upstream}}]\n\
         \x20   pricing: {{input_per_million: 1, output_per_million: 2}}\n\
         \x20   cache: {{enabled: true{extra}}}\n\
         \x20 - name: uncached\n    deployments: [{{provider: upstream}}]\n",
        mock.url()
    )
}

fn ask(prompt: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    })
}

async fn issue(gateway: &Gateway, extra: Value) -> String {
    let mut body = json!({ "name": "cached", "rpm_limit": 10_000 });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, key) = gateway.admin("POST", "/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_string()
}

struct Answer {
    status: u16,
    cache: String,
    age: Option<u64>,
    body: Value,
    text: String,
}

async fn send(gateway: &Gateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-tollgate-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let age = resp
        .headers()
        .get("age")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let stream = body["stream"] == true;
    let raw = resp.text().await.unwrap();
    let (body, text) = if stream {
        let events: Vec<Value> = raw
            .split("\n\n")
            .filter_map(|e| e.trim().strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(raw.trim_end().ends_with("data: [DONE]"), "{raw}");
        let text = events
            .iter()
            .filter_map(|e| {
                e.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        (Value::Array(events), text)
    } else {
        let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let text = body
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        (body, text)
    };
    Answer {
        status,
        cache,
        age,
        body,
        text,
    }
}

async fn upstream_requests(mock: &Mock) -> u64 {
    mock.stats().await["requests_total"].as_u64().unwrap()
}

/// The gateway's usage events, once `n` are stored.
async fn events(dir: &std::path::Path, n: usize) -> Vec<usage_event::Model> {
    let db = Database::connect(format!(
        "sqlite://{}?mode=rw",
        dir.join("data/tollgate.db").display()
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = usage_event::Entity::find().all(&db).await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "{} of {n} events", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn repeats_are_hits_in_every_form_and_are_metered_as_hits() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::spawn_in(dir.path(), &cached_route(&mock, ""), "").await;
    let key = issue(&gateway, json!({})).await;

    let first = send(&gateway, &key, &ask("What is a gateway?"), &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
    assert_eq!(upstream_requests(&mock).await, 1);
    assert!(!first.text.is_empty());

    // The same request: the stored answer, a fresh id, the same content and usage.
    let again = send(&gateway, &key, &ask("What is a gateway?"), &[]).await;
    assert_eq!((again.status, again.cache.as_str()), (200, "hit"));
    assert!(again.age.is_some());
    assert_eq!(again.text, first.text);
    assert_eq!(again.body["usage"], first.body["usage"]);
    assert_ne!(again.body["id"], first.body["id"]);
    assert!(again.body["id"].as_str().unwrap().starts_with("chatcmpl-"));

    // Fields that do not change the answer: still a hit. Keys in another order too.
    let mut same = ask("What is a gateway?");
    same["user"] = json!("someone-else");
    same["metadata"] = json!({"run": "7"});
    let reordered: Value = serde_json::from_str(
        r#"{"messages":[{"content":"What is a gateway?","role":"user"}],"temperature":0,"model":"gpt-4o-mini"}"#,
    )
    .unwrap();
    for body in [same, reordered] {
        let hit = send(&gateway, &key, &body, &[]).await;
        assert_eq!(
            (hit.cache.as_str(), hit.text.as_str()),
            ("hit", first.text.as_str())
        );
    }
    assert_eq!(upstream_requests(&mock).await, 1);

    // A stream after the non-stream answer: served from it, the same text, usage when asked.
    let mut streamed = ask("What is a gateway?");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let replay = send(&gateway, &key, &streamed, &[]).await;
    assert_eq!((replay.status, replay.cache.as_str()), (200, "hit"));
    assert_eq!(replay.text, first.text);
    let last = replay.body.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["usage"], first.body["usage"]);
    assert_eq!(upstream_requests(&mock).await, 1);

    // Parameters that change the answer miss; the client can bypass; sampling is not cached.
    let mut longer = ask("What is a gateway?");
    longer["max_tokens"] = json!(5);
    assert_eq!(send(&gateway, &key, &longer, &[]).await.cache, "miss");
    assert_eq!(
        send(&gateway, &key, &ask("Something else?"), &[])
            .await
            .cache,
        "miss"
    );
    for header in [
        ("cache-control", "no-cache"),
        ("x-tollgate-cache", "bypass"),
    ] {
        let bypassed = send(&gateway, &key, &ask("What is a gateway?"), &[header]).await;
        assert_eq!((bypassed.status, bypassed.cache.as_str()), (200, "bypass"));
    }
    let mut sampled = ask("What is a gateway?");
    sampled["temperature"] = json!(0.7);
    assert_eq!(send(&gateway, &key, &sampled, &[]).await.cache, "bypass");
    assert_eq!(upstream_requests(&mock).await, 6);
    // An uncached model carries no cache header.
    let mut other = ask("What is a gateway?");
    other["model"] = json!("uncached");
    assert_eq!(send(&gateway, &key, &other, &[]).await.cache, "");

    // A stream after a stream: stored whole with its usage, replayed with the same text,
    // without the usage chunk when not asked for.
    let mut story = ask("Tell a story.");
    story["stream"] = json!(true);
    let told = send(&gateway, &key, &story, &[]).await;
    assert_eq!(told.cache, "miss");
    let retold = send(&gateway, &key, &story, &[]).await;
    assert_eq!(
        (retold.cache.as_str(), retold.text.as_str()),
        ("hit", told.text.as_str())
    );
    assert!(
        retold
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("usage").is_none_or(Value::is_null))
    );
    story["stream_options"] = json!({"include_usage": true});
    let counted = send(&gateway, &key, &story, &[]).await;
    assert_eq!(counted.cache, "hit");
    let usage = counted.body.as_array().unwrap().last().unwrap()["usage"].clone();
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    // A non-stream request cannot be told from a stored stream: a miss, and its answer is
    // stored in its place.
    story.as_object_mut().unwrap().remove("stream");
    story.as_object_mut().unwrap().remove("stream_options");
    assert_eq!(send(&gateway, &key, &story, &[]).await.cache, "miss");
    assert_eq!(send(&gateway, &key, &story, &[]).await.cache, "hit");
    assert_eq!(upstream_requests(&mock).await, 9);

    // Usage events: hits marked, with the stored answer's tokens at no cost; the upstream's
    // part equals what the mock counted.
    let rows = events(dir.path(), 16).await;
    let hits: Vec<_> = rows
        .iter()
        .filter(|e| e.cache.as_deref() == Some("hit"))
        .collect();
    assert_eq!(hits.len(), 7, "{rows:#?}");
    for hit in &hits {
        assert_eq!((hit.deployment.as_str(), hit.cost_micro_usd), ("cache", 0));
        assert!(hit.prompt_tokens > 0 && hit.completion_tokens > 0);
    }
    let stats = mock.stats().await;
    let upstream: Vec<_> = rows
        .iter()
        .filter(|e| e.cache.as_deref() != Some("hit"))
        .collect();
    let sum = |f: fn(&usage_event::Model) -> i64| upstream.iter().map(|e| f(e)).sum::<i64>();
    assert_eq!(
        sum(|e| e.prompt_tokens) as u64,
        stats["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        sum(|e| e.completion_tokens) as u64,
        stats["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        rows.iter()
            .filter(|e| e.cache.as_deref() == Some("miss"))
            .count(),
        5
    );
    assert_eq!(
        rows.iter()
            .filter(|e| e.cache.as_deref() == Some("bypass"))
            .count(),
        3
    );
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(r#"tollgate_cache_requests_total{model="gpt-4o-mini",result="hit"} 7"#),
        "{metrics}"
    );

    // The admin API: what is held, the hit ratio from the events, then a purge.
    let (status, stats) = gateway.admin("GET", "/api/cache/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["store"], "memory");
    let model = &stats["models"][0];
    assert_eq!(model["model"], "gpt-4o-mini", "{stats}");
    assert_eq!(
        (model["hits"].as_u64(), model["misses"].as_u64()),
        (Some(7), Some(5))
    );
    assert_eq!(model["hit_ratio"].as_f64(), Some(7.0 / 12.0));
    assert!(model["entries"].as_u64().unwrap() >= 4 && stats["bytes"].as_u64().unwrap() > 0);
    let (status, purged) = gateway
        .admin("DELETE", "/api/cache?model=gpt-4o-mini", None)
        .await;
    assert_eq!(status, 200, "{purged}");
    assert!(purged["purged"].as_u64().unwrap() >= 4);
    assert_eq!(
        send(&gateway, &key, &ask("What is a gateway?"), &[])
            .await
            .cache,
        "miss"
    );
    let (status, unknown) = gateway
        .admin("DELETE", "/api/cache?key=key_nope", None)
        .await;
    assert_eq!(status, 404, "{unknown}");
}

#[tokio::test]
async fn teams_never_share_entries_and_hits_cost_what_the_policy_says() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::spawn_in(dir.path(), &cached_route(&mock, ", hit_cost: full"), "").await;
    let mut teams = Vec::new();
    for name in ["red", "blue"] {
        let (status, team) = gateway
            .admin("POST", "/api/teams", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{team}");
        teams.push(team["id"].clone());
    }
    let red = issue(&gateway, json!({ "team_id": teams[0] })).await;
    let red_too = issue(&gateway, json!({ "team_id": teams[0] })).await;
    let blue = issue(&gateway, json!({ "team_id": teams[1] })).await;
    let question = ask("Whose answer is this?");
    assert_eq!(send(&gateway, &red, &question, &[]).await.cache, "miss");
    assert_eq!(send(&gateway, &blue, &question, &[]).await.cache, "miss");
    // Another key of the same team shares the team's entry.
    assert_eq!(send(&gateway, &red_too, &question, &[]).await.cache, "hit");
    assert_eq!(upstream_requests(&mock).await, 2);

    // A key may turn the cache off: its requests skip it, until it turns it back on.
    let (status, own) = gateway
        .admin(
            "POST",
            "/api/keys",
            Some(json!({ "name": "no cache", "team_id": teams[0], "cache_enabled": false })),
        )
        .await;
    assert_eq!(
        (status, &own["cache_enabled"]),
        (201, &json!(false)),
        "{own}"
    );
    let secret = own["secret"].as_str().unwrap();
    assert_eq!(send(&gateway, secret, &question, &[]).await.cache, "bypass");
    let path = format!("/api/keys/{}", own["id"].as_str().unwrap());
    let (status, changed) = gateway
        .admin("PATCH", &path, Some(json!({ "cache_enabled": true })))
        .await;
    assert_eq!(
        (status, &changed["cache_enabled"]),
        (200, &json!(true)),
        "{changed}"
    );
    // The gateway hears of the change (its key cache is told by the admin API).
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&gateway, secret, &question, &[]).await.cache != "hit" {
        assert!(
            Instant::now() < deadline,
            "the key never used the cache again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `hit_cost: full`: the hit costs what the stored answer's tokens cost.
    let rows = events(dir.path(), 3).await;
    let miss = rows
        .iter()
        .find(|e| e.cache.as_deref() == Some("miss"))
        .unwrap();
    let hit = rows
        .iter()
        .find(|e| e.cache.as_deref() == Some("hit"))
        .unwrap();
    assert!(hit.cost_micro_usd > 0);
    assert_eq!(
        (hit.prompt_tokens, hit.completion_tokens, hit.cost_micro_usd),
        (
            miss.prompt_tokens,
            miss.completion_tokens,
            miss.cost_micro_usd
        )
    );
}

#[tokio::test]
async fn identical_misses_in_flight_make_one_upstream_request() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&cached_route(&mock, "")).await;
    let key = issue(&gateway, json!({})).await;
    let question = ask("Fifty at once?");
    let answers =
        join_all((0..50).map(|_| send(&gateway, &key, &question, &[("x-mock", "latency=400")])))
            .await;
    assert_eq!(upstream_requests(&mock).await, 1);
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.text == answers[0].text)
    );
    assert_eq!(answers.iter().filter(|a| a.cache == "miss").count(), 1);
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(r#"tollgate_cache_coalesced_total{model="gpt-4o-mini"} 49"#),
        "{metrics}"
    );

    // A leader whose answer fails releases the others: each goes upstream itself.
    mock.reset().await;
    let failing = ask("Fails once?");
    let answers = join_all((0..3).map(|i| {
        let directive = if i == 0 {
            "latency=300,status=500"
        } else {
            "latency=300"
        };
        let gateway = &gateway;
        let key = &key;
        let failing = &failing;
        async move {
            // The first goes first, so it leads.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 })).await;
            send(gateway, key, failing, &[("x-mock", directive)]).await
        }
    }))
    .await;
    assert!(answers[0].status >= 500);
    assert!(answers[1..].iter().all(|a| a.status == 200));
    assert!(upstream_requests(&mock).await >= 2);
}

// Several threads: the relay in front of Redis runs on the test's runtime while the
// gateways start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_redis_replicas_share_entries_and_an_outage_is_a_miss() {
    let redis = Relay::start(common::relay::redis_addr()).await;
    let url = redis.url();
    let prefix = format!("tgcache{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_REDIS_URL", url.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
    ];
    let mock = Mock::spawn();
    let route = cached_route(&mock, "");
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Gateway::spawn_in_env(one_dir.path(), &route, "", &envs).await;
    let two = Gateway::spawn_in_env(two_dir.path(), &route, "", &envs).await;
    let master = common::MASTER_KEY;
    let question = ask("Shared between replicas?");
    let first = send(&one, master, &question, &[]).await;
    assert_eq!(first.cache, "miss");
    // The store is written after the answer: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let other = send(&two, master, &question, &[]).await;
        if other.cache == "hit" {
            assert_eq!(other.text, first.text);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the entry never reached the other replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A purge through one replica's admin API empties Redis and is announced: the other
    // replica drops its in-process copy too (it would answer from it otherwise).
    let (status, purged) = two.admin("DELETE", "/api/cache", None).await;
    assert_eq!(
        (status, purged["purged"].as_u64()),
        (200, Some(1)),
        "{purged}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&one, master, &question, &[]).await.cache != "miss" {
        assert!(
            Instant::now() < deadline,
            "the purge never reached the other replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An answer the other replica stored (so it is in Redis only, as far as this one knows).
    let elsewhere = ask("Stored by the other replica?");
    assert_eq!(send(&two, master, &elsewhere, &[]).await.cache, "miss");
    let before = upstream_requests(&mock).await;

    // Redis goes away: what would have been a hit from Redis is a miss, answered all the same.
    redis.set(Flow::Cut);
    let answer = send(&one, master, &elsewhere, &[]).await;
    assert_eq!((answer.status, answer.cache.as_str()), (200, "miss"));
    let fresh = send(&one, master, &ask("Asked during the outage?"), &[]).await;
    assert_eq!((fresh.status, fresh.cache.as_str()), (200, "miss"));
    assert_eq!(upstream_requests(&mock).await, before + 2);
    let metrics = one.metrics_text().await;
    assert!(metrics.contains("tollgate_cache_errors_total"), "{metrics}");

    // Back: the stats read Redis again.
    redis.set(Flow::Up);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, stats) = two.admin("GET", "/api/cache/stats", None).await;
        if status == 200 {
            assert_eq!(stats["store"], "redis");
            assert!(stats["entries"].as_u64().unwrap() >= 2, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn hits_count_against_the_request_rate() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&cached_route(&mock, "")).await;
    // 3 requests a minute.
    let key = issue(&gateway, json!({ "rpm_limit": 3 })).await;
    let question = ask("Rate limited?");
    assert_eq!(send(&gateway, &key, &question, &[]).await.cache, "miss");
    for _ in 0..2 {
        let hit = send(&gateway, &key, &question, &[]).await;
        assert_eq!((hit.status, hit.cache.as_str()), (200, "hit"));
    }
    // The fourth request this minute is refused, hit or not.
    let refused = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&question)
        .send()
        .await
        .unwrap();
    let error = common::expect_error(refused, 429).await;
    assert_eq!(error["code"], "rate_limit_requests", "{error}");
    assert_eq!(upstream_requests(&mock).await, 1);
}

#[tokio::test]
async fn the_access_line_names_the_cache_outcome_and_a_hits_tokens() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let envs = [("RUST_LOG", "info"), ("TOLLGATE_LOG_FORMAT", "json")];
    let gateway =
        Gateway::spawn_logged(dir.path(), &cached_route(&mock, ""), "", &envs, &log).await;
    let question = ask("Logged?");
    assert_eq!(
        send(&gateway, common::MASTER_KEY, &question, &[])
            .await
            .cache,
        "miss"
    );
    assert_eq!(
        send(&gateway, common::MASTER_KEY, &question, &[])
            .await
            .cache,
        "hit"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| l.contains("tollgate::access"))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&lines[0]["cache"], &lines[1]["cache"]),
        (&json!("miss"), &json!("hit"))
    );
    assert_eq!(lines[1]["prompt_tokens"], lines[0]["prompt_tokens"]);
    assert_eq!(lines[1]["completion_tokens"], lines[0]["completion_tokens"]);
    // `hit_cost` defaults to zero.
    assert_eq!(lines[1]["cost_micro_usd"], 0, "{}", lines[1]);
}
