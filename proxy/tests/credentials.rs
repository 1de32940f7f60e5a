//! Provider credentials stored through the admin API are decrypted by the gateway at
//! start-up and used as the provider's key: `credential:` in the config instead of
//! `api_key:`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, MASTER_KEY, Mock, chat_body, client};
use serde_json::json;

#[tokio::test]
async fn a_stored_credential_becomes_the_provider_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Mock::spawn();
    let first = Gateway::spawn_in(dir.path(), &common::mock_route(&plain), "").await;
    let created = client()
        .post(format!("http://{}/api/providers", first.admin))
        .bearer_auth(MASTER_KEY)
        .json(&json!({ "name": "vault-key", "kind": "openai-compatible", "api_key": "sk-from-the-store-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    drop(first);

    // An upstream that accepts only that key.
    let strict = Mock::spawn_with(&["--api-key", "sk-from-the-store-42"]);
    let route = format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}', credential: vault-key}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: upstream}}]\n",
        strict.url()
    );
    let second = Gateway::spawn_in(dir.path(), &route, "").await;
    let resp = second
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    drop(second);

    // A credential that does not exist stops start-up with a message naming it.
    let missing = route.replace("credential: vault-key", "credential: no-such-key");
    let config = Gateway::write_config(dir.path(), &missing, "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOLLGATE_MASTER_KEY", MASTER_KEY)
        .env_remove("TOLLGATE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-key"), "{stderr}");
}
