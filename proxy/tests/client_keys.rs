//! Keys issued through the admin API on the request path: accepted, refused with the reason
//! (unknown, revoked, expired, rotated out, owner disabled), restricted to their models, and
//! revocation enforced at once — in one process, and across two processes sharing
//! PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Mock, SharedStores, mock_route};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_core::store::keys::KeyChange;

const SECRET: &str = "proxy-test-secret-0123456789-abcdefghijkl";

async fn issue(gateway: &Gateway, body: serde_json::Value) -> (String, String) {
    let (status, key) = gateway.admin("POST", "/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    (
        key["secret"].as_str().unwrap().to_string(),
        key["id"].as_str().unwrap().to_string(),
    )
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn issued_keys_are_checked_on_every_request() {
    let mock = Mock::spawn();
    let route = mock_route(&mock).replace(
        "models:\n",
        "models:\n  - name: gpt-4o\n    deployments: [{provider: upstream}]\n",
    );
    let gateway = Gateway::spawn(&route).await;
    let (status, user) = gateway
        .admin("POST", "/api/users", Some(json!({ "email": "kim@example.com", "password": "long-enough-password", "role": "member" })))
        .await;
    assert_eq!(status, 201);
    let (secret, id) = issue(
        &gateway,
        json!({ "name": "mini only", "user_id": user["id"], "allowed_models": ["gpt-4o-mini"] }),
    )
    .await;

    assert_eq!(gateway.chat_as(&secret, "gpt-4o-mini").await.0, 200);
    assert_eq!(
        gateway.chat_as(&secret, "mini").await.0,
        200,
        "aliases of an allowed model"
    );
    let (status, body) = gateway.chat_as(&secret, "gpt-4o").await;
    assert_eq!((status, code(&body)), (403, "model_not_allowed"), "{body}");

    let unknown = format!("tg_{}", "A".repeat(40));
    let (status, body) = gateway.chat_as(&unknown, "gpt-4o-mini").await;
    assert_eq!((status, code(&body)), (401, "invalid_api_key"));
    let (status, body) = gateway.chat_as("not-even-a-key", "gpt-4o-mini").await;
    assert_eq!((status, code(&body)), (401, "invalid_api_key"));

    // Revocation is enforced by the next request.
    let (status, _) = gateway
        .admin("POST", &format!("/api/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = gateway.chat_as(&secret, "gpt-4o-mini").await;
    assert_eq!((status, code(&body)), (401, "api_key_revoked"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&id));

    // Rotation without grace: the old secret stops, the new one works.
    let (old, id) = issue(&gateway, json!({ "name": "rotating" })).await;
    assert_eq!(gateway.chat_as(&old, "gpt-4o").await.0, 200);
    let (_, rotated) = gateway
        .admin(
            "POST",
            &format!("/api/keys/{id}/rotate"),
            Some(json!({ "grace_seconds": 0 })),
        )
        .await;
    let new = rotated["secret"].as_str().unwrap();
    let (status, body) = gateway.chat_as(&old, "gpt-4o").await;
    assert_eq!((status, code(&body)), (401, "api_key_rotated"), "{body}");
    assert_eq!(gateway.chat_as(new, "gpt-4o").await.0, 200);

    // A disabled owner's keys stop at once.
    let (owned, _) = issue(&gateway, json!({ "name": "kim's", "user_id": user["id"] })).await;
    assert_eq!(gateway.chat_as(&owned, "gpt-4o-mini").await.0, 200);
    gateway
        .admin(
            "PATCH",
            &format!("/api/users/{}", user["id"]),
            Some(json!({ "disabled": true })),
        )
        .await;
    let (status, body) = gateway.chat_as(&owned, "gpt-4o-mini").await;
    assert_eq!(
        (status, code(&body)),
        (401, "api_key_owner_disabled"),
        "{body}"
    );

    // Expiry needs no message at all.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (expiring, _) = issue(&gateway, json!({ "name": "short", "expires_at": soon })).await;
    assert_eq!(gateway.chat_as(&expiring, "gpt-4o").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body) = gateway.chat_as(&expiring, "gpt-4o").await;
    assert_eq!((status, code(&body)), (401, "api_key_expired"), "{body}");

    // last_used_at is written off the request path.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, key) = gateway.admin("GET", &format!("/api/keys/{id}"), None).await;
        if key["last_used_at"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "last_used_at never written: {key}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `replica` refuses `secret` as revoked, at most `within` after `revoked`.
async fn refused_within(replica: &Gateway, secret: &str, revoked: Instant, within: Duration) {
    loop {
        let (status, body) = replica.chat_as(secret, "gpt-4o-mini").await;
        if status == 401 {
            assert_eq!(code(&body), "api_key_revoked");
            return;
        }
        assert!(
            revoked.elapsed() < within,
            "the replica still accepted the key {within:?} after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key both replicas accept (and so hold in their caches), revoked through `a`'s admin
/// API: `b` refuses it within a second. Returns its secret.
async fn revoked_on_one(a: &Gateway, b: &Gateway) -> String {
    let (secret, id) = issue(a, json!({ "name": "shared" })).await;
    for replica in [a, b] {
        let (status, body) = replica.chat_as(&secret, "gpt-4o-mini").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = a
        .admin("POST", &format!("/api/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    refused_within(b, &secret, Instant::now(), Duration::from_secs(1)).await;
    secret
}

#[tokio::test]
async fn a_revocation_reaches_every_replica_within_a_second() {
    let stores = SharedStores::create("replicas").await;
    let envs = stores.envs(SECRET);
    let mock = Mock::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::spawn_in_env(dir_a.path(), &mock_route(&mock), "", &envs).await;
    let b = Gateway::spawn_in_env(dir_b.path(), &mock_route(&mock), "", &envs).await;

    let secret = revoked_on_one(&a, &b).await;
    assert_eq!(a.chat_as(&secret, "gpt-4o-mini").await.0, 401);
}

/// A replica started while Redis could not be reached subscribes once it can: a revocation
/// made on another replica reaches it within a second, not when its cache entry expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_before_redis_hears_revocations_once_it_is_up() {
    use common::relay::{Flow, Relay};
    let stores = SharedStores::create("late").await;
    let envs = stores.envs(SECRET);
    let relay = Relay::start(common::relay::redis_addr()).await;
    relay.set(Flow::Cut);
    let relayed = relay.url();
    let late_envs = envs.map(|(k, v)| {
        if k == "TOLLGATE_REDIS_URL" {
            (k, relayed.as_str())
        } else {
            (k, v)
        }
    });
    let mock = Mock::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::spawn_in_env(dir_a.path(), &mock_route(&mock), "", &envs).await;
    let late = Gateway::spawn_in_env(dir_b.path(), &mock_route(&mock), "", &late_envs).await;
    // Redis comes up after the replica's first attempts to subscribe failed; then both
    // replicas are subscribed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.set(Flow::Up);
    let direct = tollgate_proxy::backend::redis::connect(&format!(
        "redis://{}",
        common::relay::redis_addr()
    ))
    .await
    .unwrap();
    let prefix = envs
        .iter()
        .find(|(k, _)| *k == "TOLLGATE_REDIS_PREFIX")
        .unwrap()
        .1;
    let channel = format!("{prefix}:key-changes");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        use fred::interfaces::PubsubInterface;
        let counts: Vec<fred::types::Value> = direct.pubsub_numsub(&channel).await.unwrap();
        let subscribed = counts.get(1).and_then(fred::types::Value::as_i64);
        if subscribed == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{subscribed:?} replicas subscribed 20 s after Redis came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    revoked_on_one(&a, &late).await;
}

/// `n` PUBLISH commands of key changes for keys that do not exist, in RESP, to be written to
/// Redis in one go.
fn key_change_flood(channel: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let message = serde_json::to_string(&KeyChange::Key(format!("tg_flood{i}"))).unwrap();
        out.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{message}\r\n",
                channel.len(),
                message.len()
            )
            .as_bytes(),
        );
    }
    out
}

/// A revocation amid a burst of key-change messages far larger than a replica's subscriber
/// holds (it lags, and then forgets every cached key) still reaches every replica.
#[tokio::test]
async fn a_revocation_amid_a_burst_of_key_changes_reaches_every_replica() {
    let stores = SharedStores::create("burst").await;
    let envs = stores.envs(SECRET);
    let mock = Mock::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::spawn_in_env(dir_a.path(), &mock_route(&mock), "", &envs).await;
    let b = Gateway::spawn_in_env(dir_b.path(), &mock_route(&mock), "", &envs).await;
    let (secret, id) = issue(&a, json!({ "name": "burst" })).await;
    for replica in [&a, &b] {
        assert_eq!(replica.chat_as(&secret, "gpt-4o-mini").await.0, 200);
    }

    let redis_url = envs[1].1;
    let prefix = envs[2].1;
    let addr = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    let (mut replies, mut redis) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    // Redis's replies (one per PUBLISH) are read so that it never waits on this socket.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while replies.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let flood = key_change_flood(&format!("{prefix}:key-changes"), 5_000);
    redis.write_all(&flood).await.unwrap();
    let (status, _) = a
        .admin("POST", &format!("/api/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    let revoked = Instant::now();
    redis.write_all(&flood).await.unwrap();
    refused_within(&b, &secret, revoked, Duration::from_secs(2)).await;
    drain.abort();
}

/// A key restricted to some models sees only those in `/v1/models`, by their own name or
/// an alias it was allowed; other callers see every model.
#[tokio::test]
async fn a_restricted_key_lists_only_its_models() {
    let mock = Mock::spawn();
    let route = mock_route(&mock).replace(
        "models:\n",
        "models:\n  - name: gpt-4o\n    deployments: [{provider: upstream}]\n",
    );
    let gateway = Gateway::spawn(&route).await;
    let (mini, _) = issue(
        &gateway,
        json!({ "name": "mini only", "allowed_models": ["gpt-4o-mini"] }),
    )
    .await;
    let (by_alias, _) = issue(
        &gateway,
        json!({ "name": "alias only", "allowed_models": ["mini"] }),
    )
    .await;
    let (open, _) = issue(&gateway, json!({ "name": "every model" })).await;
    let ids = |body: serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |key: String, path: &'static str| {
        let url = gateway.url(path);
        async move {
            let resp = common::client()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };

    for key in [&mini, &by_alias] {
        let (status, body) = get(key.clone(), "/v1/models").await;
        assert_eq!(status, 200);
        assert_eq!(ids(body), ["gpt-4o-mini"]);
        let (status, body) = get(key.clone(), "/v1/models/gpt-4o").await;
        assert_eq!((status, code(&body)), (404, "model_not_found"), "{body}");
    }
    let (status, body) = get(mini.clone(), "/v1/models/mini").await;
    assert_eq!((status, body["id"].as_str()), (200, Some("gpt-4o-mini")));
    let (_, body) = get(open, "/v1/models").await;
    assert_eq!(ids(body), ["gpt-4o", "gpt-4o-mini"]);
    let (_, body) = get(common::MASTER_KEY.to_string(), "/v1/models").await;
    assert_eq!(ids(body), ["gpt-4o", "gpt-4o-mini"]);
}

/// The `key_lookup` database calls the gateway has made.
async fn key_lookups(gateway: &Gateway) -> usize {
    let text = gateway.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("tollgate_database_seconds_count{operation=\"key_lookup\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn a_new_key_s_first_burst_reads_it_from_the_database_once() {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn(&mock_route(&mock)).await;
    let (secret, _) = issue(&gateway, json!({ "name": "burst" })).await;
    let before = key_lookups(&gateway).await;
    // 40 requests at once with a key no request has used yet: all wait for one look-up.
    let answers =
        futures_util::future::join_all((0..40).map(|_| gateway.chat_as(&secret, "gpt-4o-mini")))
            .await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(key_lookups(&gateway).await - before, 1);
    // Later requests find it cached; a made-up key fails the keyed check before any
    // look-up.
    assert_eq!(gateway.chat_as(&secret, "gpt-4o-mini").await.0, 200);
    let unknown = format!("tg_{}", "B".repeat(40));
    let answers =
        futures_util::future::join_all((0..20).map(|_| gateway.chat_as(&unknown, "gpt-4o-mini")))
            .await;
    assert!(
        answers.iter().all(|(status, _)| *status == 401),
        "{answers:?}"
    );
    assert_eq!(key_lookups(&gateway).await - before, 1);
}
