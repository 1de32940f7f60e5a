//! Admin API behaviour on both backends: secrets shown once, rotation grace, encrypted
//! credentials (round trip and tamper detection), validation and conflicts, one audit row
//! per change, sessions, and usage reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::{App, MASTER_KEY};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait, Set};
use serde_json::{Value, json};
use tollgate_core::{
    secrets::SecretError,
    store::{
        StoreError,
        entity::{audit_log, provider_credential, usage_event, user::Role},
        keys::{self, KeyRejection},
        providers,
    },
};

const M: Option<&str> = Some(MASTER_KEY);

async fn audit_rows(app: &App) -> u64 {
    audit_log::Entity::find().count(&app.db).await.unwrap()
}

both!(key_secret_is_shown_once, |app: App| async move {
    let created = app
        .call(
            "POST",
            "/api/keys",
            M,
            Some(json!({ "name": "ci", "user_id": app.member.id, "rpm_limit": 10 })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.body["secret"].as_str().unwrap().to_string();
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tg_") && secret.len() == 43);
    assert_eq!(created.body["prefix"], secret[..11]);

    // No later response, to anyone, contains the secret or its hash.
    let stored = keys::get_key(&app.db, &id).await.unwrap();
    let member = app.token(&app.member);
    let later = [
        app.call("GET", "/api/keys", M, None).await,
        app.call("GET", "/api/keys?include_revoked=true", Some(&member), None)
            .await,
        app.call("GET", &format!("/api/keys/{id}"), M, None).await,
        app.call(
            "PATCH",
            &format!("/api/keys/{id}"),
            M,
            Some(json!({ "name": "renamed" })),
        )
        .await,
        app.call("GET", "/api/audit?per_page=500", M, None).await,
        app.call("POST", &format!("/api/keys/{id}/revoke"), M, None)
            .await,
        app.call("GET", &format!("/api/keys/{id}"), Some(&member), None)
            .await,
    ];
    for reply in later {
        assert!(reply.status < 300, "{}", reply.text);
        assert!(
            !reply.text.contains(&secret),
            "secret leaked: {}",
            reply.text
        );
        assert!(
            !reply.text.contains(&stored.secret_hash),
            "hash leaked: {}",
            reply.text
        );
        assert!(!reply.text.contains("\"secret\""), "{}", reply.text);
    }
});

both!(
    rotation_keeps_the_old_secret_for_the_grace_period,
    |app: App| async move {
        let created = app
            .call("POST", "/api/keys", M, Some(json!({ "name": "svc" })))
            .await;
        let old = created.body["secret"].as_str().unwrap().to_string();
        let id = created.body["id"].as_str().unwrap().to_string();
        let now = Utc::now();
        assert!(
            keys::authenticate(&app.db, &app.secret, &old, now)
                .await
                .unwrap()
                .is_ok()
        );

        let rotated = app
            .call(
                "POST",
                &format!("/api/keys/{id}/rotate"),
                M,
                Some(json!({ "grace_seconds": 600 })),
            )
            .await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        let new = rotated.body["secret"].as_str().unwrap().to_string();
        assert_ne!(new, old);
        assert_eq!(rotated.body["id"], id.as_str());
        assert!(rotated.body["previous_secret_valid_until"].is_string());

        let auth = |secret: String, at| {
            let app = &app;
            async move {
                keys::authenticate(&app.db, &app.secret, &secret, at)
                    .await
                    .unwrap()
            }
        };
        // Both work within the grace period; after it only the new one does.
        assert!(auth(new.clone(), now + Duration::seconds(1)).await.is_ok());
        assert!(
            auth(old.clone(), now + Duration::seconds(590))
                .await
                .is_ok()
        );
        assert_eq!(
            auth(old.clone(), now + Duration::seconds(610))
                .await
                .unwrap_err(),
            KeyRejection::Rotated
        );
        assert!(
            auth(new.clone(), now + Duration::seconds(610))
                .await
                .is_ok()
        );
        assert_eq!(
            auth("tg_unknown".into(), now).await.unwrap_err(),
            KeyRejection::Unknown
        );

        // Grace 0 ends the old secret at once; revocation ends everything.
        let again = app
            .call(
                "POST",
                &format!("/api/keys/{id}/rotate"),
                M,
                Some(json!({ "grace_seconds": 0 })),
            )
            .await;
        let newest = again.body["secret"].as_str().unwrap().to_string();
        assert_eq!(
            auth(new.clone(), Utc::now()).await.unwrap_err(),
            KeyRejection::Rotated
        );
        app.call("POST", &format!("/api/keys/{id}/revoke"), M, None)
            .await;
        assert_eq!(
            auth(newest, Utc::now()).await.unwrap_err(),
            KeyRejection::Revoked
        );
        let refused = app
            .call("POST", &format!("/api/keys/{id}/rotate"), M, None)
            .await;
        assert_eq!(refused.status, 409, "{}", refused.text);

        // Expired keys are refused as such.
        let short = app
        .call("POST", "/api/keys", M, Some(json!({ "name": "short", "expires_at": (Utc::now() + Duration::seconds(30)).to_rfc3339() })))
        .await;
        let secret = short.body["secret"].as_str().unwrap().to_string();
        assert_eq!(
            auth(secret, Utc::now() + Duration::seconds(31))
                .await
                .unwrap_err(),
            KeyRejection::Expired
        );
    }
);

both!(
    provider_credentials_are_encrypted_and_tamper_evident,
    |app: App| async move {
        let plaintext = "sk-live-abcdefghijklmnop-WXYZ";
        let created = app
            .call(
                "POST",
                "/api/providers",
                M,
                Some(json!({ "name": "openai-prod", "kind": "openai", "api_key": plaintext })),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["api_key"], "…WXYZ");
        let id = created.body["id"].as_i64().unwrap();
        for reply in [
            app.call("GET", "/api/providers", M, None).await,
            app.call(
                "GET",
                &format!("/api/providers/{id}"),
                Some(&app.token(&app.viewer)),
                None,
            )
            .await,
            app.call("GET", "/api/audit", M, None).await,
        ] {
            assert!(!reply.text.contains(plaintext), "{}", reply.text);
        }

        // At rest: ciphertext only, and it opens to the plaintext.
        let row = provider_credential::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&row.secret_ciphertext).contains("abcdefghijkl"));
        assert_eq!(row.secret_nonce.len(), 12);
        assert_eq!(
            providers::open_secret(&app.secret, &row).unwrap(),
            plaintext
        );

        // A new key through the API re-encrypts.
        app.call(
            "PATCH",
            &format!("/api/providers/{id}"),
            M,
            Some(json!({ "api_key": "sk-second-1234" })),
        )
        .await;
        let row = provider_credential::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            providers::open_secret(&app.secret, &row).unwrap(),
            "sk-second-1234"
        );

        // Flip one byte of the stored ciphertext: decryption fails, clearly.
        let mut tampered = row.secret_ciphertext.clone();
        tampered[3] ^= 0x01;
        let mut active = row.clone().into_active_model();
        active.secret_ciphertext = Set(tampered);
        let stored = active.update(&app.db).await.unwrap();
        let err = providers::open_secret(&app.secret, &stored).unwrap_err();
        assert!(
            matches!(err, StoreError::Secret(SecretError::Tampered)),
            "{err:?}"
        );
        assert!(err.to_string().contains("altered"), "{err}");

        // A ciphertext moved to another row fails too (the row id is associated data).
        let mut moved = row.clone();
        moved.id += 1000;
        assert!(providers::open_secret(&app.secret, &moved).is_err());
    }
);

both!(bad_input_is_named, |app: App| async move {
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "POST",
            "/api/users",
            json!({ "email": "nope", "password": "long-enough-pass", "role": "member" }),
            422,
            "email",
        ),
        (
            "POST",
            "/api/users",
            json!({ "email": "a@example.com", "password": "short", "role": "member" }),
            422,
            "password",
        ),
        (
            "POST",
            "/api/users",
            json!({ "email": "a@example.com", "password": "long-enough-pass", "role": "boss" }),
            422,
            "role",
        ),
        (
            "POST",
            "/api/users",
            json!({ "email": "a@example.com", "password": "long-enough-pass" }),
            422,
            "role",
        ),
        (
            "POST",
            "/api/users",
            json!({ "email": "admin@example.com", "password": "long-enough-pass", "role": "member" }),
            409,
            "email",
        ),
        ("POST", "/api/keys", json!({ "name": "" }), 422, "name"),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "rpm_limit": 0 }),
            422,
            "rpm_limit",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "budget_micro_usd": 5 }),
            422,
            "budget_period",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "budget_micro_usd": 5, "budget_period": "week" }),
            422,
            "budget_period",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "user_id": 999999 }),
            422,
            "user_id",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "expires_at": "2001-01-01T00:00:00Z" }),
            422,
            "expires_at",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "tpm_limit": "many" }),
            422,
            "tpm_limit",
        ),
        (
            "POST",
            "/api/keys",
            json!({ "name": "k", "colour": "red" }),
            422,
            "colour",
        ),
        (
            "POST",
            "/api/providers",
            json!({ "name": "p", "kind": "openia", "api_key": "x" }),
            422,
            "kind",
        ),
        (
            "POST",
            "/api/providers",
            json!({ "name": "p", "kind": "openai", "api_key": "x", "base_url": "ftp://x" }),
            422,
            "base_url",
        ),
        ("POST", "/api/teams", json!({ "name": "  " }), 422, "name"),
        ("GET", "/api/users?per_page=0", Value::Null, 422, "per_page"),
        ("GET", "/api/users?role=boss", Value::Null, 422, "role"),
        (
            "GET",
            "/api/usage?group_by=planet",
            Value::Null,
            422,
            "group_by",
        ),
        (
            "GET",
            "/api/usage?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            Value::Null,
            422,
            "from",
        ),
    ];
    for (method, path, body, status, param) in cases {
        let body = (!body.is_null()).then_some(body);
        let reply = app.call(method, path, M, body.clone()).await;
        assert_eq!(
            reply.status, status,
            "{method} {path} {body:?}: {}",
            reply.text
        );
        assert_eq!(
            reply.body["error"]["param"], param,
            "{method} {path}: {}",
            reply.text
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(param)
                || status == 409,
            "{}",
            reply.text
        );
    }
    for path in [
        "/api/users/999999",
        "/api/users/abc",
        "/api/teams/999999",
        "/api/keys/key_nope",
        "/api/providers/999999",
        "/api/nowhere",
    ] {
        let reply = app.call("GET", path, M, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"]["type"], "not_found_error");
    }
    // Not JSON at all.
    let resp = app
        .http
        .post(format!("{}/api/teams", app.base))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // A body far over the limit is refused, not read without end.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let resp = app
        .http
        .post(format!("{}/api/teams", app.base))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status() == 400 || resp.status() == 413,
        "{}",
        resp.status()
    );
});

both!(every_change_writes_one_audit_row, |app: App| async move {
    let team = app
        .call("POST", "/api/teams", M, Some(json!({ "name": "t" })))
        .await;
    let team_id = team.body["id"].as_i64().unwrap();
    let user = app.call("POST", "/api/users", M, Some(json!({ "email": "u@example.com", "password": "long-enough-pass", "role": "member" }))).await;
    let user_id = user.body["id"].as_i64().unwrap();
    let key = app
        .call(
            "POST",
            "/api/keys",
            M,
            Some(json!({ "name": "k", "user_id": user_id })),
        )
        .await;
    let key_id = key.body["id"].as_str().unwrap().to_string();
    let provider = app
        .call(
            "POST",
            "/api/providers",
            M,
            Some(json!({ "name": "p", "kind": "openai", "api_key": "sk-1234" })),
        )
        .await;
    let provider_id = provider.body["id"].as_i64().unwrap();
    let changes: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            "/api/teams".into(),
            Some(json!({ "name": "t2" })),
            "team.create",
        ),
        (
            "PATCH",
            format!("/api/teams/{team_id}"),
            Some(json!({ "name": "t3" })),
            "team.update",
        ),
        (
            "PUT",
            format!("/api/teams/{team_id}/members/{user_id}"),
            None,
            "team.member.add",
        ),
        (
            "DELETE",
            format!("/api/teams/{team_id}/members/{user_id}"),
            None,
            "team.member.remove",
        ),
        (
            "PATCH",
            format!("/api/users/{user_id}"),
            Some(json!({ "role": "viewer" })),
            "user.update",
        ),
        (
            "PATCH",
            format!("/api/keys/{key_id}"),
            Some(json!({ "tpm_limit": 1000, "allowed_models": ["gpt-4o"] })),
            "key.update",
        ),
        (
            "POST",
            format!("/api/keys/{key_id}/rotate"),
            None,
            "key.rotate",
        ),
        (
            "POST",
            format!("/api/keys/{key_id}/revoke"),
            None,
            "key.revoke",
        ),
        (
            "PATCH",
            format!("/api/providers/{provider_id}"),
            Some(json!({ "base_url": "https://api.example.com/v1" })),
            "provider.update",
        ),
        (
            "DELETE",
            format!("/api/providers/{provider_id}"),
            None,
            "provider.delete",
        ),
        (
            "DELETE",
            format!("/api/teams/{team_id}"),
            None,
            "team.delete",
        ),
        (
            "DELETE",
            format!("/api/users/{user_id}"),
            None,
            "user.delete",
        ),
        (
            "POST",
            "/api/users".into(),
            Some(
                json!({ "email": "v@example.com", "password": "long-enough-pass", "role": "viewer" }),
            ),
            "user.create",
        ),
        (
            "POST",
            "/api/keys".into(),
            Some(json!({ "name": "k2" })),
            "key.create",
        ),
        (
            "POST",
            "/api/providers".into(),
            Some(json!({ "name": "p2", "kind": "anthropic", "api_key": "sk-ant" })),
            "provider.create",
        ),
    ];
    for (method, path, body, action) in changes {
        let before = audit_rows(&app).await;
        let reply = app.call(method, &path, M, body).await;
        assert!(reply.status < 300, "{method} {path}: {}", reply.text);
        assert_eq!(audit_rows(&app).await, before + 1, "{method} {path}");
        let last = app.call("GET", "/api/audit?per_page=1", M, None).await;
        assert_eq!(last.body["data"][0]["action"], action, "{}", last.text);
        assert_eq!(last.body["data"][0]["actor"], "master-key");
        assert_eq!(last.body["data"][0]["request_ip"], "127.0.0.1");
    }
    // A refused change writes nothing.
    let before = audit_rows(&app).await;
    let refused = app.call("POST", "/api/users", M, Some(json!({ "email": "admin@example.com", "password": "long-enough-pass", "role": "member" }))).await;
    assert_eq!(refused.status, 409);
    assert_eq!(audit_rows(&app).await, before);
    // Filters work.
    let filtered = app
        .call(
            "GET",
            &format!("/api/audit?target_type=key&target_id={key_id}"),
            M,
            None,
        )
        .await;
    let actions: Vec<&str> = filtered.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.revoke", "key.rotate", "key.update", "key.create"]
    );
});

both!(sessions_and_the_last_admin, |app: App| async move {
    let login = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await
        }
    };
    let ok = login("Member@Example.com", common::PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let token = ok.body["token"].as_str().unwrap().to_string();
    let me = app.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(me.body["user"]["email"], "member@example.com");
    assert_eq!(me.body["role"], "member");
    let refreshed = app
        .call("POST", "/api/auth/refresh", Some(&token), None)
        .await;
    assert_eq!(refreshed.status, 200);

    assert_eq!(
        login("member@example.com", "wrong-password-123")
            .await
            .status,
        401
    );
    assert_eq!(
        login("nobody@example.com", common::PASSWORD).await.status,
        401
    );

    // Changing one's own password needs the current one.
    let own = format!("/api/users/{}", app.member.id);
    let new_password = json!({ "password": "a-brand-new-password" });
    let missing = app
        .call("PATCH", &own, Some(&token), Some(new_password.clone()))
        .await;
    assert_eq!(
        (missing.status, missing.body["error"]["param"].as_str()),
        (422, Some("current_password"))
    );
    let wrong = app
        .call("PATCH", &own, Some(&token), Some(json!({ "password": "a-brand-new-password", "current_password": "not-the-password" })))
        .await;
    assert_eq!(wrong.status, 422);
    let changed = app
        .call(
            "PATCH",
            &own,
            Some(&token),
            Some(
                json!({ "password": "a-brand-new-password", "current_password": common::PASSWORD }),
            ),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    // The new password ends the sessions logged in with the old one, this one included.
    for path in ["/api/auth/me", "/api/auth/refresh"] {
        let method = if path.ends_with("me") { "GET" } else { "POST" };
        let ended = app.call(method, path, Some(&token), None).await;
        assert_eq!(ended.status, 401, "{}", ended.text);
        assert!(
            ended.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("password was changed"),
            "{}",
            ended.text
        );
    }
    let relogin = login("member@example.com", "a-brand-new-password").await;
    assert_eq!(relogin.status, 200, "{}", relogin.text);
    let token = relogin.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        app.call("GET", "/api/auth/me", Some(&token), None)
            .await
            .status,
        200
    );
    // An admin setting the password ends them as well.
    let reset = app
        .call(
            "PATCH",
            &own,
            M,
            Some(json!({ "password": "an-admin-set-password" })),
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text);
    assert_eq!(
        app.call("GET", "/api/auth/me", Some(&token), None)
            .await
            .status,
        401
    );
    let relogin = login("member@example.com", "an-admin-set-password").await;
    assert_eq!(relogin.status, 200, "{}", relogin.text);
    let token = relogin.body["token"].as_str().unwrap().to_string();

    // Refreshing cannot stretch a session past 12 hours from its login.
    let member = tollgate_core::store::users::get_user(&app.db, app.member.id)
        .await
        .unwrap();
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    let old = tollgate_admin::auth::sign_token(
        app.secret.jwt_key(),
        &member,
        day_ago,
        std::time::SystemTime::now() + std::time::Duration::from_secs(600),
    )
    .unwrap();
    let refused = app
        .call("POST", "/api/auth/refresh", Some(&old.token), None)
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);

    // Disabling a user ends their sessions at once.
    let disabled = app
        .call(
            "PATCH",
            &format!("/api/users/{}", app.member.id),
            M,
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(disabled.status, 200);
    let after = app.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(after.status, 401);
    assert!(
        after.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    assert_eq!(
        login("member@example.com", common::PASSWORD).await.status,
        401
    );

    // The last active admin cannot be demoted, disabled or deleted.
    let admin = format!("/api/users/{}", app.admin.id);
    for body in [json!({ "role": "member" }), json!({ "disabled": true })] {
        let reply = app.call("PATCH", &admin, M, Some(body)).await;
        assert_eq!(reply.status, 409, "{}", reply.text);
    }
    assert_eq!(app.call("DELETE", &admin, M, None).await.status, 409);
    // With a second admin it can.
    let second = app.make_user("second@example.com", Role::Admin).await;
    assert_eq!(
        app.call("PATCH", &admin, M, Some(json!({ "role": "viewer" })))
            .await
            .status,
        200
    );
    assert_eq!(
        app.call("DELETE", &format!("/api/users/{}", second.id), M, None)
            .await
            .status,
        409
    );

    // Pagination and filters.
    for i in 0..5 {
        app.make_user(&format!("bulk{i}@example.com"), Role::Viewer)
            .await;
    }
    let page = app
        .call("GET", "/api/users?per_page=2&page=2&role=viewer", M, None)
        .await;
    assert_eq!(page.body["total"], 7);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    let found = app.call("GET", "/api/users?email=BULK3", M, None).await;
    assert_eq!(found.body["data"][0]["email"], "bulk3@example.com");
});

both!(usage_reports_group_and_export, |app: App| async move {
    let key = app
        .call(
            "POST",
            "/api/keys",
            M,
            Some(json!({ "name": "reporting", "user_id": app.member.id })),
        )
        .await;
    let key_row = keys::get_key(&app.db, key.body["id"].as_str().unwrap())
        .await
        .unwrap();
    // Yesterday from 03:00 UTC: the events are in the past and on one day whatever the time
    // of the run (three hours back from now crossed midnight in the first hours of a day,
    // and the export by day then had a line more).
    let base = Utc::now()
        .date_naive()
        .and_hms_opt(3, 0, 0)
        .unwrap()
        .and_utc()
        - Duration::days(1);
    let events = [
        (
            0,
            Some(key_row.id),
            Some(app.member.id),
            "gpt-4o",
            100,
            20,
            1500,
        ),
        (
            0,
            Some(key_row.id),
            Some(app.member.id),
            "gpt-4o",
            50,
            10,
            750,
        ),
        (
            1,
            Some(key_row.id),
            Some(app.member.id),
            "gpt-4o-mini",
            10,
            5,
            3,
        ),
        (2, None, None, "gpt-4o-mini", 7, 7, 2),
        (2, None, Some(app.admin.id), "gpt-4o", 1, 1, 11),
    ];
    for (i, (hour, key_id, user_id, model, p, c, cost)) in events.into_iter().enumerate() {
        usage_event::ActiveModel {
            event_id: Set(format!("ev-{i}")),
            request_id: Set(format!("req-{i}")),
            occurred_at: Set(base + Duration::hours(hour) + Duration::minutes(i as i64)),
            key_id: Set(key_id),
            user_id: Set(user_id),
            team_id: Set(None),
            model: Set(model.into()),
            deployment: Set("mock".into()),
            prompt_tokens: Set(p),
            completion_tokens: Set(c),
            cost_micro_usd: Set(cost),
            status: Set(200),
            latency_ms: Set(12),
            ttft_ms: Set(Some(5)),
            estimated: Set(false),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    // Fixtures written straight into the events table: their rollup is rebuilt, as the
    // reports read whole days from it.
    tollgate_core::store::usage::rebuild_rollup(&app.db)
        .await
        .unwrap();
    let by_model = app.call("GET", "/api/usage", M, None).await;
    assert_eq!(by_model.status, 200, "{}", by_model.text);
    assert_eq!(
        by_model.body["totals"],
        json!({ "requests": 5, "prompt_tokens": 168, "completion_tokens": 43, "cost_micro_usd": 2266 })
    );
    assert_eq!(by_model.body["groups"][0]["group"], "gpt-4o");
    assert_eq!(by_model.body["groups"][0]["requests"], 3);

    let by_key = app.call("GET", "/api/usage?group_by=key", M, None).await;
    let groups = by_key.body["groups"].as_array().unwrap();
    let keyed = groups
        .iter()
        .find(|g| g["group"] == key_row.public_id.as_str())
        .unwrap();
    assert_eq!(keyed["label"], "reporting");
    assert_eq!(keyed["cost_micro_usd"], 2253);

    // A member sees only their own usage, whatever they ask.
    let member = app.token(&app.member);
    let own = app.call("GET", "/api/usage", Some(&member), None).await;
    assert_eq!(own.body["totals"]["requests"], 3);

    let series = app
        .call(
            "GET",
            "/api/usage/series?bucket=hour&group_by=model",
            M,
            None,
        )
        .await;
    let points = series.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{}", series.text);
    let first_hour = base.format("%Y-%m-%dT%H:00:00Z").to_string();
    assert_eq!(points[0]["bucket"], first_hour.as_str());
    assert_eq!(points[0]["requests"], 2);

    let range = format!(
        "from={}",
        (base + Duration::minutes(90))
            .to_rfc3339()
            .replace('+', "%2B")
    );
    let later = app
        .call("GET", &format!("/api/usage?{range}"), M, None)
        .await;
    assert_eq!(later.body["totals"]["requests"], 2, "{}", later.text);

    let resp = app
        .http
        .get(format!("{}/api/usage/export?group_by=user", app.base))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "bucket,group,label,requests,prompt_tokens,completion_tokens,cost_micro_usd"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(csv.contains("member@example.com"), "{csv}");
});

both!(
    a_members_keys_are_bounded_by_their_owner,
    |app: App| async move {
        let admin = app.token(&app.admin);
        let member = app.token(&app.member);
        // Before any policy, a key an admin limited does not stop the member: their owner's
        // own limits bound the keys they make.
        let limited = app
        .call(
            "PATCH",
            &format!("/api/users/{}", app.member.id),
            Some(&admin),
            Some(json!({
                "limits": { "tpm_limit": 5000 },
                "key_policy": {
                    "allowed_models": ["gpt-4o-mini"],
                    "key_limits": { "rpm_limit": 20, "budget_micro_usd": 1000000, "budget_period": "day" },
                },
            })),
        )
        .await;
        assert_eq!(limited.status, 200, "{}", limited.text);
        assert_eq!(
            limited.body["key_policy"]["allowed_models"],
            json!(["gpt-4o-mini"])
        );
        assert_eq!(limited.body["key_policy"]["key_limits"]["rpm_limit"], 20);
        // The member's bare key gets every ceiling, the owner's own tpm included.
        let escape = app
            .call(
                "POST",
                "/api/keys",
                Some(&member),
                Some(json!({ "name": "escape" })),
            )
            .await;
        assert_eq!(escape.status, 201, "{}", escape.text);
        assert_eq!(escape.body["allowed_models"], json!(["gpt-4o-mini"]));
        assert_eq!(escape.body["rpm_limit"], 20);
        assert_eq!(escape.body["tpm_limit"], 5000);
        assert_eq!(escape.body["budget_micro_usd"], 1000000);
        assert_eq!(escape.body["budget_period"], "day");
        // Anything beyond is refused, naming the field.
        for (body, field) in [
            (json!({ "name": "x", "rpm_limit": 21 }), "rpm_limit"),
            (json!({ "name": "x", "tpm_limit": 5001 }), "tpm_limit"),
            (
                json!({ "name": "x", "allowed_models": ["gpt-4o"] }),
                "allowed_models",
            ),
            (
                json!({ "name": "x", "budget_micro_usd": 10, "budget_period": "month" }),
                "budget_period",
            ),
        ] {
            let refused = app
                .call("POST", "/api/keys", Some(&member), Some(body))
                .await;
            assert_eq!(refused.status, 403, "{}", refused.text);
            assert!(
                refused.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(field),
                "{}",
                refused.text
            );
        }
        // And what a create refuses, a change refuses too.
        let id = escape.body["id"].as_str().unwrap();
        let widen = app
            .call(
                "PATCH",
                &format!("/api/keys/{id}"),
                Some(&member),
                Some(json!({ "rpm_limit": null })),
            )
            .await;
        assert_eq!(widen.status, 403, "{}", widen.text);
        // Admins are not bound.
        let admins = app
            .call(
                "POST",
                "/api/keys",
                Some(&admin),
                Some(json!({ "name": "any", "user_id": app.member.id })),
            )
            .await;
        assert_eq!(admins.status, 201);
        assert_eq!(admins.body["allowed_models"], serde_json::Value::Null);
    }
);

/// A request for `gpt-4o` served by `mock` at `at` with `status`, without key, user or tokens.
fn answered(id: &str, at: chrono::DateTime<Utc>, status: i32) -> usage_event::ActiveModel {
    usage_event::ActiveModel {
        event_id: Set(id.to_string()),
        request_id: Set(format!("req-{id}")),
        occurred_at: Set(at),
        key_id: Set(None),
        user_id: Set(None),
        team_id: Set(None),
        model: Set("gpt-4o".into()),
        deployment: Set("mock".into()),
        prompt_tokens: Set(0),
        completion_tokens: Set(0),
        cost_micro_usd: Set(0),
        status: Set(status),
        latency_ms: Set(1),
        ttft_ms: Set(None),
        estimated: Set(false),
        ..Default::default()
    }
}

both!(
    outcomes_count_refusals_by_code_and_list_the_latest,
    |app: App| async move {
        let key = app
            .call(
                "POST",
                "/api/keys",
                M,
                Some(json!({ "name": "refused", "user_id": app.member.id })),
            )
            .await;
        let public = key.body["id"].as_str().unwrap().to_string();
        let key_row = keys::get_key(&app.db, &public).await.unwrap();
        let base = Utc::now() - Duration::minutes(30);
        // (minutes, key, user, status, code)
        type Event<'a> = (i64, Option<i64>, Option<i64>, i32, Option<&'a str>);
        let events: [Event; 5] = [
            (0, Some(key_row.id), Some(app.member.id), 200, None),
            (
                1,
                Some(key_row.id),
                Some(app.member.id),
                429,
                Some("rate_limit_requests"),
            ),
            (
                2,
                Some(key_row.id),
                Some(app.member.id),
                429,
                Some("rate_limit_requests"),
            ),
            (3, None, Some(app.admin.id), 429, Some("rate_limit_tokens")),
            (4, None, Some(app.admin.id), 502, None),
        ];
        for (i, (minute, key_id, user_id, status, code)) in events.into_iter().enumerate() {
            usage_event::ActiveModel {
                key_id: Set(key_id),
                user_id: Set(user_id),
                error_code: Set(code.map(str::to_string)),
                error_message: Set(code.map(|c| format!("refused: {c}"))),
                ..answered(
                    &format!("out-{i}"),
                    base + Duration::minutes(minute),
                    status,
                )
            }
            .insert(&app.db)
            .await
            .unwrap();
        }
        let all = app.call("GET", "/api/usage/outcomes", M, None).await;
        assert_eq!(all.status, 200, "{}", all.text);
        assert_eq!(all.body["requests"], 5);
        assert_eq!(all.body["errors"], 4);
        assert_eq!(
            all.body["by_status"],
            json!([{"status": 200, "requests": 1}, {"status": 429, "requests": 3}, {"status": 502, "requests": 1}])
        );
        assert_eq!(
            all.body["by_code"],
            json!([{"code": "rate_limit_requests", "requests": 2}, {"code": "rate_limit_tokens", "requests": 1}])
        );
        // Newest first, with the key's id and name and the message the client got.
        let recent = all.body["recent"].as_array().unwrap();
        assert_eq!(recent.len(), 4);
        assert_eq!(recent[0]["status"], 502);
        assert_eq!(recent[2]["key_id"], public.as_str());
        assert_eq!(recent[2]["key_name"], "refused");
        assert_eq!(recent[2]["message"], "refused: rate_limit_requests");

        // One key's refusals, and at most `limit` of them.
        let one = app
            .call(
                "GET",
                &format!("/api/usage/outcomes?key_id={public}&limit=1"),
                M,
                None,
            )
            .await;
        assert_eq!(one.body["requests"], 3, "{}", one.text);
        assert_eq!(one.body["recent"].as_array().unwrap().len(), 1);
        assert_eq!(one.body["recent"][0]["code"], "rate_limit_requests");

        // A member sees only their own; a limit over the cap names the field.
        let member = app.token(&app.member);
        let own = app
            .call("GET", "/api/usage/outcomes", Some(&member), None)
            .await;
        assert_eq!(own.body["requests"], 3, "{}", own.text);
        let too_many = app
            .call("GET", "/api/usage/outcomes?limit=1000", M, None)
            .await;
        assert_eq!(too_many.status, 422);
        assert_eq!(too_many.body["error"]["param"], "limit");
    }
);

both!(
    keys_are_searched_and_filtered_by_status,
    |app: App| async move {
        for name in ["billing-lines", "Billing_Live", "search 100%"] {
            let made = app
                .call("POST", "/api/keys", M, Some(json!({ "name": name })))
                .await;
            assert_eq!(made.status, 201, "{}", made.text);
        }
        // A key past its expiry (the API accepts only future expiries, so it is set in place).
        let expired = app
            .call("POST", "/api/keys", M, Some(json!({ "name": "old" })))
            .await;
        let mut old = keys::get_key(&app.db, expired.body["id"].as_str().unwrap())
            .await
            .unwrap()
            .into_active_model();
        old.expires_at = Set(Some(Utc::now() - Duration::hours(1)));
        old.update(&app.db).await.unwrap();
        let revoked = app
            .call("POST", "/api/keys", M, Some(json!({ "name": "gone" })))
            .await;
        let revoked_id = revoked.body["id"].as_str().unwrap();
        app.call("POST", &format!("/api/keys/{revoked_id}/revoke"), M, None)
            .await;
        let names = |reply: &common::Reply| -> Vec<String> {
            reply.body["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{}", reply.text))
                .iter()
                .map(|k| k["name"].as_str().unwrap().to_string())
                .collect()
        };
        let billing = app.call("GET", "/api/keys?search=BILLING", M, None).await;
        assert_eq!(names(&billing), ["billing-lines", "Billing_Live"]);
        // `%` and `_` are matched as themselves, not as wildcards.
        let percent = app.call("GET", "/api/keys?search=100%25", M, None).await;
        assert_eq!(names(&percent), ["search 100%"]);
        // As a wildcard `_` would also match "billing-lines"; the text cannot occur in the
        // random ids and prefixes (their only `_` follows `tg` or `key`).
        let underscore = app.call("GET", "/api/keys?search=ng_li", M, None).await;
        assert_eq!(names(&underscore), ["Billing_Live"]);
        let by_prefix = app
            .call(
                "GET",
                &format!(
                    "/api/keys?include_revoked=true&search={}",
                    &revoked.body["prefix"].as_str().unwrap()
                ),
                M,
                None,
            )
            .await;
        assert_eq!(names(&by_prefix), ["gone"]);

        let active = app.call("GET", "/api/keys?status=active", M, None).await;
        assert_eq!(names(&active).len(), 3, "{}", active.text);
        let exp = app.call("GET", "/api/keys?status=expired", M, None).await;
        assert_eq!(names(&exp), ["old"], "{}", expired.text);
        let rev = app.call("GET", "/api/keys?status=revoked", M, None).await;
        assert_eq!(names(&rev), ["gone"]);
        let bad = app.call("GET", "/api/keys?status=lost", M, None).await;
        assert_eq!(bad.status, 422, "{}", bad.text);
    }
);

both!(
    routes_show_models_to_all_and_deployments_to_readers,
    |app: App| async move {
        // Two answers from the provider in the window, one a 502; one an hour ago (outside).
        for (i, (minutes_ago, status)) in [(1, 200), (2, 502), (60, 500)].into_iter().enumerate() {
            usage_event::ActiveModel {
                event_id: Set(format!("route-{i}")),
                request_id: Set(format!("req-route-{i}")),
                occurred_at: Set(Utc::now() - Duration::minutes(minutes_ago)),
                key_id: Set(None),
                user_id: Set(None),
                team_id: Set(None),
                model: Set("gpt-4o".into()),
                deployment: Set("mock".into()),
                prompt_tokens: Set(0),
                completion_tokens: Set(0),
                cost_micro_usd: Set(0),
                status: Set(status),
                latency_ms: Set(10 * (i as i32 + 1)),
                ttft_ms: Set(None),
                estimated: Set(false),
                ..Default::default()
            }
            .insert(&app.db)
            .await
            .unwrap();
        }
        let admin = app.call("GET", "/api/routes", M, None).await;
        assert_eq!(admin.status, 200, "{}", admin.text);
        assert_eq!(admin.body["models"][0]["name"], "gpt-4o");
        assert_eq!(admin.body["models"][0]["aliases"], json!(["smart"]));
        let deployment = &admin.body["models"][0]["deployments"][0];
        assert_eq!(deployment["upstream_model"], "gpt-4o-2024-08-06");
        assert_eq!(deployment["weight"], 3);
        assert_eq!(deployment["rpm"], 100);
        assert_eq!(deployment["state"], "cooling_down");
        assert_eq!(deployment["in_flight"], 2);
        assert_eq!(deployment["last_error"], "status 503");
        assert_eq!(admin.body["models"][0]["strategy"], "latency");
        assert_eq!(admin.body["models"][0]["fallbacks"], json!(["gpt-4o-mini"]));
        assert_eq!(admin.body["health_window_minutes"], 15);
        assert_eq!(
            admin.body["health"],
            json!([{ "provider": "mock", "requests": 2, "failures": 1, "mean_latency_ms": 15 }])
        );
        assert!(!admin.text.contains("api_key"), "{}", admin.text);

        let viewer = app.token(&app.viewer);
        let seen = app.call("GET", "/api/routes", Some(&viewer), None).await;
        assert_eq!(seen.body["models"][0]["deployments"][0]["provider"], "mock");
        // A member learns the model names and prices, not where they are served.
        let member = app.token(&app.member);
        let names = app.call("GET", "/api/routes", Some(&member), None).await;
        assert_eq!(names.status, 200, "{}", names.text);
        assert_eq!(names.body["models"][0]["name"], "gpt-4o");
        assert_eq!(names.body["models"][0]["deployments"], json!([]));
        assert_eq!(names.body["health"], json!([]));
        let anonymous = app.call("GET", "/api/routes", None, None).await;
        assert_eq!(anonymous.status, 401);
    }
);

both!(
    reports_read_whole_days_from_the_rollup_written_with_the_events,
    |app: App| async move {
        use tollgate_core::store::usage::insert_events;
        // Events over four days, written as the gateway writes them; noon of today - 3 is
        // the range's start, so that day counts from noon only.
        let today = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let event = |i: usize, at: chrono::DateTime<Utc>, model: &str, key: Option<i64>| {
            usage_event::Model {
                id: 0,
                event_id: format!("roll-{i}"),
                request_id: format!("req-roll-{i}"),
                occurred_at: at,
                key_id: key,
                user_id: key.map(|_| app.member.id),
                team_id: None,
                model: model.to_string(),
                deployment: "mock".into(),
                prompt_tokens: 10 + i as i64,
                completion_tokens: 2 * i as i64,
                cost_micro_usd: 100 * i as i64,
                status: 200,
                latency_ms: 5,
                ttft_ms: None,
                estimated: false,
                error_code: None,
                error_message: None,
                cache: None,
            }
        };
        let mut events = Vec::new();
        for day in 0..4 {
            for hour in [1, 11, 13, 23] {
                let at = today - Duration::days(3 - day) + Duration::hours(hour);
                if at < Utc::now() {
                    let i = events.len();
                    let model = if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
                    events.push(event(i, at, model, (i % 3 == 0).then_some(7)));
                }
            }
        }
        insert_events(&app.db, &events[..5]).await.unwrap();
        // A replay of a batch, and a batch overlapping it, count each event once.
        insert_events(&app.db, &events[..5]).await.unwrap();
        insert_events(&app.db, &events[3..]).await.unwrap();
        let from = today - Duration::days(3) + Duration::hours(12);
        let to = Utc::now();
        let expected = events
            .iter()
            .filter(|e| e.occurred_at >= from && e.occurred_at < to)
            .fold((0, 0, 0, 0), |(n, p, c, cost), e| {
                (
                    n + 1,
                    p + e.prompt_tokens,
                    c + e.completion_tokens,
                    cost + e.cost_micro_usd,
                )
            });
        let query = |extra: &str| {
            format!(
                "/api/usage?from={}&to={}{extra}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .replace('+', "%2B"),
                to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .replace('+', "%2B"),
            )
        };
        let totals = |body: &Value| {
            (
                body["totals"]["requests"].as_i64().unwrap(),
                body["totals"]["prompt_tokens"].as_i64().unwrap(),
                body["totals"]["completion_tokens"].as_i64().unwrap(),
                body["totals"]["cost_micro_usd"].as_i64().unwrap(),
            )
        };
        let report = app.call("GET", &query(""), M, None).await;
        assert_eq!(report.status, 200, "{}", report.text);
        assert_eq!(totals(&report.body), expected, "{}", report.text);
        // The whole days are the rollup's: with their raw events gone (as retention will
        // delete them), the report is the same.
        use sea_orm::{ColumnTrait, QueryFilter};
        usage_event::Entity::delete_many()
            .filter(usage_event::Column::OccurredAt.gte(today - Duration::days(2)))
            .filter(usage_event::Column::OccurredAt.lt(today))
            .exec(&app.db)
            .await
            .unwrap();
        let again = app.call("GET", &query(""), M, None).await;
        assert_eq!(totals(&again.body), expected, "{}", again.text);
        // Grouped by key and as a daily series, the same sums.
        let by_key = app.call("GET", &query("&group_by=key"), M, None).await;
        let keyed: i64 = by_key.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["requests"].as_i64().unwrap())
            .sum();
        assert_eq!(keyed, expected.0, "{}", by_key.text);
        let series = app
            .call(
                "GET",
                &format!(
                    "{}&bucket=day",
                    query("").replace("/api/usage?", "/api/usage/series?")
                ),
                M,
                None,
            )
            .await;
        assert_eq!(series.status, 200, "{}", series.text);
        let points = series.body["points"].as_array().unwrap();
        let summed: i64 = points.iter().map(|p| p["requests"].as_i64().unwrap()).sum();
        assert_eq!(summed, expected.0, "{}", series.text);
        assert!(
            points
                .iter()
                .all(|p| p["bucket"].as_str().unwrap().ends_with("T00:00:00Z")),
            "{}",
            series.text
        );

        // Retention: budgets read whole days from the rollup too, so deleting the old raw
        // events changes no spend; a day with no rollup keeps its events.
        use tollgate_core::store::usage::{Pruned, Spender, delete_rolled_up_before, spent};
        let key_spend: i64 = events
            .iter()
            .filter(|e| e.key_id == Some(7))
            .map(|e| e.cost_micro_usd)
            .sum();
        assert_eq!(
            spent(&app.db, Spender::Key(7), None).await.unwrap(),
            key_spend
        );
        let mut pruned = 0;
        loop {
            match delete_rolled_up_before(&app.db, today, 2).await.unwrap() {
                Pruned::Deleted(n) => pruned += n,
                Pruned::Nothing => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(pruned > 0);
        assert_eq!(
            spent(&app.db, Spender::Key(7), None).await.unwrap(),
            key_spend
        );
        let since = today - Duration::days(2);
        let recent: i64 = events
            .iter()
            .filter(|e| e.key_id == Some(7) && e.occurred_at >= since)
            .map(|e| e.cost_micro_usd)
            .sum();
        assert_eq!(
            spent(&app.db, Spender::Key(7), Some(since)).await.unwrap(),
            recent
        );
        // Whole days are still reported after retention (a range starting inside a day
        // whose events are gone counts only that day's retained part: none).
        let whole = |from: chrono::DateTime<Utc>| {
            events
                .iter()
                .filter(|e| e.occurred_at >= from && e.occurred_at < to)
                .count() as i64
        };
        let start = today - Duration::days(3);
        let last = app
            .call(
                "GET",
                &format!(
                    "/api/usage?from={}&to={}",
                    start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
                M,
                None,
            )
            .await;
        assert_eq!(
            last.body["totals"]["requests"],
            whole(start),
            "{}",
            last.text
        );
        // An event written around the rollup (an old import) is not deleted.
        let mut stray = event(99, today - Duration::days(10), "gpt-4o", None);
        stray.event_id = "roll-stray".into();
        usage_event::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            ..stray.into()
        }
        .insert(&app.db)
        .await
        .unwrap();
        assert!(matches!(
            delete_rolled_up_before(&app.db, today, 100).await.unwrap(),
            Pruned::NotRolledUp {
                events: 1,
                rolled: 0,
                ..
            }
        ));

        // Budgets read today from the rollup as well (the events carry no owner index):
        // with today's raw events gone, every owner's spend is unchanged. A `since` inside
        // a day adds what is left of that day's events (here none: retention took them).
        let mut latest = event(
            98,
            Utc::now() - Duration::milliseconds(1),
            "gpt-4o",
            Some(7),
        );
        latest.event_id = "roll-latest".into();
        insert_events(&app.db, std::slice::from_ref(&latest))
            .await
            .unwrap();
        let mut all = events.clone();
        all.push(latest);
        let spend = |filter: &dyn Fn(&usage_event::Model) -> bool| -> i64 {
            all.iter()
                .filter(|e| e.occurred_at >= today && filter(e))
                .map(|e| e.cost_micro_usd)
                .sum()
        };
        let key_today = spend(&|e| e.key_id == Some(7));
        let member_today = spend(&|e| e.user_id == Some(app.member.id));
        assert!(key_today > 0);
        usage_event::Entity::delete_many()
            .filter(usage_event::Column::OccurredAt.gte(today))
            .exec(&app.db)
            .await
            .unwrap();
        assert_eq!(
            spent(&app.db, Spender::Key(7), Some(today)).await.unwrap(),
            key_today
        );
        assert_eq!(
            spent(&app.db, Spender::User(app.member.id), Some(today))
                .await
                .unwrap(),
            member_today
        );
        assert_eq!(
            spent(&app.db, Spender::Key(7), Some(today - Duration::hours(12)))
                .await
                .unwrap(),
            key_today
        );
    }
);

both!(
    event_batches_of_any_size_store_each_event_once_as_written,
    |app: App| async move {
        use sea_orm::QueryOrder;
        use tollgate_core::store::usage::insert_events;
        // Every field set, to a value of its own per event, so a column bound in the wrong
        // place cannot read back equal.
        // Whole milliseconds: PostgreSQL keeps microseconds.
        let base = chrono::DateTime::from_timestamp_millis(
            (Utc::now() - Duration::hours(1)).timestamp_millis(),
        )
        .unwrap();
        let event = |i: i64| usage_event::Model {
            id: 0,
            event_id: format!("odd-{i:05}"),
            request_id: format!("req-odd-{i}"),
            occurred_at: base + Duration::milliseconds(i),
            key_id: (i % 3 != 0).then_some(i),
            user_id: (i % 5 != 0).then_some(i + 1),
            team_id: (i % 2 == 0).then_some(i + 2),
            model: format!("model-{}", i % 7),
            deployment: format!("dep-{}", i % 4),
            prompt_tokens: i * 3,
            completion_tokens: i * 5,
            cost_micro_usd: i * 11,
            status: if i % 9 == 0 { 429 } else { 200 },
            latency_ms: i32::try_from(i).unwrap() + 1,
            ttft_ms: (i % 4 == 0).then_some(i32::try_from(i).unwrap()),
            estimated: i % 6 == 0,
            error_code: (i % 9 == 0).then(|| "rate_limit_exceeded".to_string()),
            error_message: (i % 9 == 0).then(|| format!("limit {i}")),
            cache: (i % 2 == 0).then(|| ["hit", "miss", "bypass"][(i % 3) as usize].to_string()),
        };
        // 301 events (256 + 32 + 8 + 4 + 1 rows per statement), then a batch overlapping
        // its last 100 and adding 57 more: each is stored once.
        let first: Vec<_> = (0..301).map(event).collect();
        let second: Vec<_> = (201..358).map(event).collect();
        insert_events(&app.db, &first).await.unwrap();
        insert_events(&app.db, &second).await.unwrap();
        insert_events(&app.db, &second[..1]).await.unwrap();
        let stored: Vec<usage_event::Model> = usage_event::Entity::find()
            .order_by_asc(usage_event::Column::EventId)
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| usage_event::Model { id: 0, ..e })
            .collect();
        let written: Vec<_> = (0..358).map(event).collect();
        assert_eq!(stored.len(), written.len());
        for (got, want) in stored.iter().zip(&written) {
            assert_eq!(got, want);
        }
        // The rollup counted each event once too.
        let requests: i64 = usage_daily_requests(&app).await;
        assert_eq!(requests, 358);
    }
);

async fn usage_daily_requests(app: &App) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM usage_daily",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}
