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

struct Setup {
    redis: Relay,
    gateway: Gateway,
    mock: Mock,
    key: String,
    _dir: tempfile::TempDir,
}

/// A gateway whose Redis is behind a relay, with a key of `limits`.
async fn setup(mode: &str, limits: Value) -> Setup {
    setup_from(mode, limits, Flow::Up).await
}

/// As [`setup`], the relay at `flow` while the gateway starts.
async fn setup_from(mode: &str, limits: Value, flow: Flow) -> Setup {
    let redis = Relay::start(common::relay::redis_addr()).await;
    redis.set(flow);
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

/// A gateway started while Redis cannot be reached connects once it can: from then on
/// its quotas are enforced in Redis again, not refused for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_redis_connects_later() {
    let s = setup_from("fail_closed", json!({ "rpm_limit": 3 }), Flow::Cut).await;
    assert_eq!(
        burst(&s, 1, "1ms").await,
        [503],
        "served with Redis cut off"
    );
    s.redis.set(Flow::Up);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let statuses = burst(&s, 1, "1ms").await;
        if statuses == [200] || std::time::Instant::now() > deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(first, [200], "still refused 20 s after Redis came up");
    // And the key's window is kept in Redis again: the limit is reached.
    let mut statuses = Vec::new();
    while statuses.len() < 5 && !statuses.contains(&429) {
        statuses.extend(burst(&s, 1, "1ms").await);
    }
    assert!(statuses.contains(&429), "rpm 3 not enforced: {statuses:?}");
    drop(s.mock);
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

/// A settlement whose answer is lost is retried until Redis answers, and applies once:
/// also in a scope with a token limit and no lease to tell by. Sent just before a cut (the
/// first attempt lost), the retry applies it; held in a stall while retries pile up behind
/// it, all arrive together and it counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_settlement_applies_exactly_once() {
    use fred::interfaces::KeysInterface;
    use tollgate_proxy::quota::{
        Decision, Limits, Owner, QuotaStore, RedisStore, Reservation, Scoped, Usage, now_ms,
    };

    let relay = Relay::start(common::relay::redis_addr()).await;
    let through = tollgate_proxy::backend::redis::connect(&relay.url())
        .await
        .unwrap();
    let direct = tollgate_proxy::backend::redis::connect(&format!(
        "redis://{}",
        common::relay::redis_addr()
    ))
    .await
    .unwrap();
    let prefix = format!("tgstall{}", fastrand::u64(..));
    let store = RedisStore::new(through, &prefix, &tokio::runtime::Handle::current());
    let reservation = |scope: &str| Reservation {
        id: format!("overrun-{scope}"),
        now_ms: now_ms(),
        scopes: vec![Scoped {
            scope: scope.into(),
            limits: Limits {
                tpm: Some(600),
                ..Limits::default()
            },
            owner: Owner::Key(1),
        }],
        tokens: 10,
        cost: 0,
        lease_ms: 60_000,
    };
    // The token level of a scope (reserved 10, then settled to 500 used; the bucket drains
    // 10 a second).
    let level = |scope: &str| {
        let (direct, key) = (&direct, format!("{prefix}:q:{{{scope}}}:levels"));
        async move {
            let raw: Option<Vec<u8>> = direct.get(&key).await.unwrap();
            raw.as_deref()
                .and_then(|b| b.get(8..16))
                .map_or(0.0, |b| f64::from_le_bytes(b.try_into().unwrap()))
        }
    };
    let settled = |scope: &'static str| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let tokens = level(scope).await;
            if tokens > 300.0 {
                return tokens;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{scope}: the token level stayed at {tokens}: the settlement never applied"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // Reserves in `scope`, then settles 500 tokens into a stall: the settlement goes out
    // and its answer does not come.
    let settle_into_a_stall = |scope: &'static str| {
        let (store, relay) = (&store, &relay);
        async move {
            let r = reservation(scope);
            assert!(matches!(store.reserve(&r).await, Ok(Decision::Allowed(_))));
            relay.set(Flow::Stalled);
            let used = Usage {
                tokens: 500,
                cost: 0,
            };
            let lost = store.settle(&r, used).await;
            assert!(lost.as_ref().is_err_and(|e| e.maybe_applied()), "{lost:?}");
        }
    };

    // Cut: what the link held is lost, and the retry applies it.
    settle_into_a_stall("k:1").await;
    relay.set(Flow::Cut);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.set(Flow::Up);
    settled("k:1").await;

    // Stall: the first attempt and its retries all arrive once the link flows again.
    settle_into_a_stall("k:2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.set(Flow::Up);
    settled("k:2").await;
    // Whatever else arrives late finds the settlement applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tokens = level("k:2").await;
    assert!(
        tokens < 600.0,
        "the settlement applied more than once: {tokens} tokens"
    );
}
