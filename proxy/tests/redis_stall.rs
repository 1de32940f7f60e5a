//! A network stall between the gateway and Redis, played by a relay that holds every byte
//! until it flows again: reservations whose answers came too late must never stay counted,
//! under both store-error policies. Real processes: the gateway, the mock and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Gateway, Mock, chat_body, client,
    relay::{Flow, Relay},
};
use futures_util::future::join_all;
use serde_json::{Value, json};

fn redis_addr() -> std::net::SocketAddr {
    std::env::var("TOLLGATE_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        .trim_start_matches("redis://")
        .parse()
        .unwrap()
}

struct Setup {
    redis: Relay,
    gateway: Gateway,
    mock: Mock,
    key: String,
    _dir: tempfile::TempDir,
}

/// A gateway whose Redis is behind a relay, with a key of `limits`.
async fn setup(mode: &str, limits: Value) -> Setup {
    let redis = Relay::start(redis_addr()).await;
    let url = redis.url();
    let prefix = format!("tgstall{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_REDIS_URL", url.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
    ];
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "{}quota:\n  on_store_error: {mode}\n",
        common::mock_route(&mock)
    );
    let gateway = Gateway::spawn_in_env(dir.path(), &route, "", &envs).await;
    let mut body = json!({ "name": "stalled" });
    body.as_object_mut()
        .unwrap()
        .extend(limits.as_object().unwrap().clone());
    let (status, key) = gateway.admin("POST", "/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    Setup {
        redis,
        gateway,
        mock,
        key: key["secret"].as_str().unwrap().to_string(),
        _dir: dir,
    }
}

/// `n` chat requests at once, each answered by the mock after `latency`; their statuses.
async fn burst(s: &Setup, n: usize, latency: &str) -> Vec<u16> {
    let sends = (0..n).map(|_| {
        client()
            .post(s.gateway.url("/v1/chat/completions"))
            .bearer_auth(&s.key)
            .header("x-mock", format!("latency={latency}"))
            .json(&chat_body("gpt-4o-mini", false))
            .send()
    });
    join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect()
}

fn served(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 200).count()
}

/// A concurrency-4 key: requests sent while Redis stalls, then Redis back; within a second
/// the key serves 4 at once again (the late reservations took no slot, or gave it back).
async fn no_lock_out_after_a_stall(mode: &str) {
    let s = setup(mode, json!({ "concurrency_limit": 4 })).await;
    assert_eq!(burst(&s, 4, "10ms").await, [200; 4]);
    s.redis.set(Flow::Stalled);
    let during = burst(&s, 6, "300ms").await;
    let expected = if mode == "fail_open" { 200 } else { 503 };
    assert!(during.contains(&expected), "{mode}: {during:?}");
    s.redis.set(Flow::Up);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = burst(&s, 4, "300ms").await;
    assert_eq!(after, [200; 4], "{mode}: locked out after the stall");
    // And still exactly 4: a fifth at once is refused.
    let over = burst(&s, 5, "300ms").await;
    assert_eq!(served(&over), 4, "{mode}: {over:?}");
    drop(s.mock);
}

// Multi-threaded: the relay must keep running while requests wait on the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_does_not_lock_a_key_out_when_failing_open() {
    no_lock_out_after_a_stall("fail_open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_does_not_lock_a_key_out_when_failing_closed() {
    no_lock_out_after_a_stall("fail_closed").await;
}

/// An rpm-20 key: what it may still do after a stall equals 20 minus what was really
/// served before and during it (refused requests count nothing, requests served under the
/// local limiter count once).
async fn the_window_counts_what_was_served(mode: &str) {
    let s = setup(mode, json!({ "rpm_limit": 20 })).await;
    let before = served(&burst(&s, 2, "1ms").await);
    assert_eq!(before, 2);
    s.redis.set(Flow::Stalled);
    let during = served(&burst(&s, 8, "1ms").await);
    assert_eq!(during, if mode == "fail_open" { 8 } else { 0 }, "{mode}");
    s.redis.set(Flow::Up);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut after = 0;
    for _ in 0..30 {
        after += served(&burst(&s, 1, "1ms").await);
    }
    let total = before + during + after;
    // The window drains one request every 3 s: the few seconds this takes may free one
    // or two more.
    assert!(
        (20..=22).contains(&total),
        "{mode}: {before} served before the stall, {during} during, {after} after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_counts_what_was_served_when_failing_open() {
    the_window_counts_what_was_served("fail_open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_counts_what_was_served_when_failing_closed() {
    the_window_counts_what_was_served("fail_closed").await;
}

/// A request admitted through Redis that ends while Redis is cut off: its settlement fails
/// and is retried once Redis is back, so its slot does not stay taken until its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_lost_in_an_outage_is_retried() {
    let s = setup("fail_closed", json!({ "concurrency_limit": 1 })).await;
    let running = burst(&s, 1, "1500ms");
    let stall = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.redis.set(Flow::Cut);
    };
    let (statuses, ()) = tokio::join!(running, stall);
    assert_eq!(statuses, [200]);
    // It ended during the outage; its settlement waits.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.redis.set(Flow::Up);
    // Reconnecting takes up to 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(burst(&s, 1, "1ms").await, [200], "the slot stayed taken");
}
