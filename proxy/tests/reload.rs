//! Config reload without a restart, against real processes: SIGHUP and a changed file swap
//! routes and models at once; a broken edit changes nothing and is counted; a stream keeps
//! flowing across reloads; no request is lost under load; a provider credential replaced
//! through the admin API is used without a restart, by every replica sharing the database
//! and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, MASTER_KEY, Mock, SharedStores, chat_body, client};
use serde_json::json;

fn route(mock: &Mock, extra_models: &str) -> String {
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream}}]\n{extra_models}",
        mock.url()
    )
}

fn hangup(gw: &Gateway) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &gw.proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// `tollgate_config_reloads_total{result=…}`.
async fn reloads(gw: &Gateway, result: &str) -> u64 {
    let text = gw.metrics_text().await;
    let needle = format!("tollgate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn status_of(gw: &Gateway, model: &str) -> u16 {
    gw.post("/v1/chat/completions")
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits up to 10 s for `check` to hold.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_and_a_changed_file_reload_and_a_broken_edit_changes_nothing() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn_in(dir.path(), &route(&mock, ""), "").await;
    assert_eq!(status_of(&gw, "gpt-4o").await, 404);

    // A model added and SIGHUP: served at once.
    let added = "  - name: gpt-4o\n    deployments: [{provider: upstream}]\n";
    Gateway::write_config(dir.path(), &route(&mock, added), "");
    hangup(&gw);
    eventually(|| async { status_of(&gw, "gpt-4o").await == 200 }).await;
    assert!(reloads(&gw, "ok").await >= 1);
    let list: serde_json::Value = gw
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    // A broken edit (unknown provider), noticed from the file alone: nothing changes.
    let before = reloads(&gw, "error").await;
    let broken = "  - name: gpt-4.1\n    deployments: [{provider: nowhere}]\n";
    Gateway::write_config(dir.path(), &route(&mock, &format!("{added}{broken}")), "");
    eventually(|| async { reloads(&gw, "error").await > before }).await;
    assert_eq!(status_of(&gw, "gpt-4o").await, 200);
    assert_eq!(status_of(&gw, "gpt-4.1").await, 404);

    // The model removed by a good edit: gone at once.
    Gateway::write_config(dir.path(), &route(&mock, ""), "");
    eventually(|| async { status_of(&gw, "gpt-4o").await == 404 }).await;
    assert_eq!(status_of(&gw, "gpt-4o-mini").await, 200);
}

#[tokio::test]
async fn a_stream_keeps_flowing_across_three_reloads() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn_in(dir.path(), &route(&mock, ""), "").await;
    // About 10 s of tokens.
    let mut body = chat_body("gpt-4o-mini", true);
    body["max_tokens"] = json!(100);
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-mock", "tokens=100,itl=100ms")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let reader = tokio::spawn(async move { resp.text().await.unwrap() });
    for i in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let models = format!("  - name: extra-{i}\n    deployments: [{{provider: upstream}}]\n");
        Gateway::write_config(dir.path(), &route(&mock, &models), "");
        hangup(&gw);
        eventually(|| async { status_of(&gw, &format!("extra-{i}")).await == 200 }).await;
    }
    assert!(
        !reader.is_finished(),
        "the stream ended before the third reload"
    );
    let text = reader.await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(9));
    let chunks = text.matches("\"content\":").count();
    assert!(chunks >= 100, "{chunks} content chunks: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn reloads_under_load_lose_no_request() {
    use futures_util::StreamExt;
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn_in(dir.path(), &route(&mock, ""), "").await;
    let load = async {
        // About 200 requests a second for 3 s.
        futures_util::stream::iter(0..600u64)
            .map(|i| {
                let gw = &gw;
                async move {
                    tokio::time::sleep(Duration::from_millis(5 * i)).await;
                    status_of(gw, "gpt-4o-mini").await
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<u16>>()
            .await
    };
    let reloading = async {
        for i in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let weight = if i % 2 == 0 { 2 } else { 1 };
            let config = route(&mock, "").replace(
                "deployments: [{provider: upstream}]",
                &format!("deployments: [{{provider: upstream, weight: {weight}}}]"),
            );
            Gateway::write_config(dir.path(), &config, "");
            hangup(&gw);
        }
    };
    let (statuses, ()) = tokio::join!(load, reloading);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(reloads(&gw, "ok").await >= 3);
}

#[tokio::test]
async fn a_credential_replaced_through_the_admin_api_is_used_without_a_restart() {
    let strict = Mock::spawn_with(&["--api-key", "sk-right-key-0001"]);
    let dir = tempfile::tempdir().unwrap();
    // Started once to store a wrong credential, then again with a config that uses it.
    let first = Gateway::spawn_in(dir.path(), &route(&strict, ""), "").await;
    let created = client()
        .post(format!("http://{}/api/providers", first.admin))
        .bearer_auth(MASTER_KEY)
        .json(&json!({ "name": "vault-key", "kind": "openai-compatible", "api_key": "sk-wrong-key-0000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"].clone();
    drop(first);
    let with_credential = route(&strict, "").replace("'}", "', credential: vault-key}");
    let gw = Gateway::spawn_in(dir.path(), &with_credential, "").await;
    assert_eq!(status_of(&gw, "gpt-4o-mini").await, 401);

    let (status, body) = gw
        .admin(
            "PATCH",
            &format!("/api/providers/{id}"),
            Some(json!({ "api_key": "sk-right-key-0001" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(|| async { status_of(&gw, "gpt-4o-mini").await == 200 }).await;
}

#[tokio::test]
async fn a_credential_replaced_on_one_replica_is_used_by_the_other() {
    let strict = Mock::spawn_with(&["--api-key", "sk-right-key-0001"]);
    let stores = SharedStores::create("credreload").await;
    let envs = stores.envs("reload-test-secret-0123456789-abcdefghij");
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    // A first process stores a wrong credential; two replicas then start with a config that
    // uses it.
    let first = Gateway::spawn_in_env(dirs[0].path(), &route(&strict, ""), "", &envs).await;
    let (status, created) = first
        .admin(
            "POST",
            "/api/providers",
            Some(json!({ "name": "vault-key", "kind": "openai-compatible", "api_key": "sk-wrong-key-0000" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    drop(first);
    let with_credential = route(&strict, "").replace("'}", "', credential: vault-key}");
    let a = Gateway::spawn_in_env(dirs[1].path(), &with_credential, "", &envs).await;
    let b = Gateway::spawn_in_env(dirs[2].path(), &with_credential, "", &envs).await;
    assert_eq!(status_of(&a, "gpt-4o-mini").await, 401);
    assert_eq!(status_of(&b, "gpt-4o-mini").await, 401);

    let (status, body) = a
        .admin(
            "PATCH",
            &format!("/api/providers/{}", created["id"]),
            Some(json!({ "api_key": "sk-right-key-0001" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Replica B learns of it through Redis, not by restarting or polling its file.
    eventually(|| async { status_of(&b, "gpt-4o-mini").await == 200 }).await;
    assert_eq!(status_of(&a, "gpt-4o-mini").await, 200);
}
