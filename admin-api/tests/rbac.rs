//! The RBAC matrix: every route of the admin API × every kind of caller (no token, an
//! expired token, a token signed with another key, an `alg: none` token, viewer, member,
//! admin, master key), each cell on fresh fixtures, asserting the status. A second check
//! makes sure the matrix covers every operation in the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime},
};

use common::App;
use josekit::{jws::JwsHeader, jwt};
use serde_json::{Value, json};
use tollgate_admin::auth::sign_token;
use tollgate_core::limits::LimitChanges;
use tollgate_core::store::{
    Actor,
    entity::user::Role,
    key_policy::PolicyChanges,
    keys::{self, KeyLimits, NewKey},
    providers::{self, NewCredential},
    users::{self, UserChanges},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Expired,
    Forged,
    AlgNone,
    Viewer,
    Member,
    Admin,
    Master,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Expired,
    Caller::Forged,
    Caller::AlgNone,
    Caller::Viewer,
    Caller::Member,
    Caller::Admin,
    Caller::Master,
];

/// Objects made fresh for each cell.
struct Fixture {
    other_user: i64,
    team: i64,
    own_key: String,
    own_team_key: String,
    other_key: String,
    provider: i64,
    member: i64,
    n: u32,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

async fn fixture(app: &App) -> Fixture {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let actor = Actor::system("fixture");
    // A cell may have promoted the member (admins can): start each cell from a member,
    // whose own keys may have one model and at most 100 requests a minute.
    users::update_user(
        &app.db,
        app.member.id,
        UserChanges {
            role: Some(Role::Member),
            key_policy: PolicyChanges {
                allowed_models: Some(Some(vec!["gpt-4o-mini".into()])),
                key_limits: LimitChanges {
                    rpm_limit: Some(Some(100)),
                    ..Default::default()
                },
            },
            ..Default::default()
        },
        &actor,
    )
    .await
    .unwrap();
    let other = app
        .make_user(&format!("other{n}@example.com"), Role::Member)
        .await;
    let team = app
        .call(
            "POST",
            "/api/teams",
            Some(common::MASTER_KEY),
            Some(json!({ "name": format!("team-{n}") })),
        )
        .await;
    assert_eq!(team.status, 201, "{}", team.text);
    let team_id = team.body["id"].as_i64().unwrap();
    // `other` is in the team already, so that removing a member has someone to remove.
    let added = app
        .call(
            "PUT",
            &format!("/api/teams/{team_id}/members/{}", other.id),
            Some(common::MASTER_KEY),
            None,
        )
        .await;
    assert_eq!(added.status, 204);
    let key = |user_id: i64, name: &str| NewKey {
        name: name.to_string(),
        user_id: Some(user_id),
        team_id: None,
        limits: KeyLimits::default(),
        cache_enabled: true,
    };
    let own = keys::create_key(&app.db, &app.secret, key(app.member.id, "own"), &actor)
        .await
        .unwrap();
    let own_team = keys::create_key(
        &app.db,
        &app.secret,
        NewKey {
            team_id: Some(team_id),
            ..key(app.member.id, "own team")
        },
        &actor,
    )
    .await
    .unwrap();
    let others = keys::create_key(&app.db, &app.secret, key(other.id, "other"), &actor)
        .await
        .unwrap();
    let provider = providers::create_credential(
        &app.db,
        &app.secret,
        NewCredential {
            name: format!("provider-{n}"),
            kind: "openai".into(),
            base_url: None,
            secret: "sk-test-0123456789".into(),
        },
        &actor,
    )
    .await
    .unwrap();
    Fixture {
        other_user: other.id,
        team: team_id,
        own_key: own.key.public_id,
        own_team_key: own_team.key.public_id,
        other_key: others.key.public_id,
        provider: provider.id,
        member: app.member.id,
        n,
    }
}

/// A token of the caller's current password: a row may have changed it.
async fn token(app: &App, caller: Caller) -> Option<String> {
    let current = |user: &tollgate_core::store::entity::user::Model| {
        let id = user.id;
        async move {
            tollgate_core::store::users::get_user(&app.db, id)
                .await
                .unwrap()
        }
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    match caller {
        Caller::Anonymous => None,
        Caller::Expired => Some(
            sign_token(
                app.secret.jwt_key(),
                &app.admin,
                hour_ago,
                hour_ago + Duration::from_secs(600),
            )
            .unwrap()
            .token,
        ),
        Caller::Forged => Some(
            sign_token(
                &[9; 32],
                &app.admin,
                SystemTime::now(),
                SystemTime::now() + Duration::from_secs(600),
            )
            .unwrap()
            .token,
        ),
        Caller::AlgNone => {
            let mut payload = jwt::JwtPayload::new();
            payload.set_issuer("tollgate");
            payload.set_audience(vec!["tollgate-admin"]);
            payload.set_subject(app.admin.id.to_string());
            payload.set_issued_at(&SystemTime::now());
            payload.set_expires_at(&(SystemTime::now() + Duration::from_secs(600)));
            Some(jwt::encode_unsecured(&payload, &JwsHeader::new()).unwrap())
        }
        Caller::Viewer => Some(app.token(&current(&app.viewer).await)),
        Caller::Member => Some(app.token(&current(&app.member).await)),
        Caller::Admin => Some(app.token(&current(&app.admin).await)),
        Caller::Master => Some(common::MASTER_KEY.to_string()),
    }
}

/// One row: a request built from a fixture, and the status for viewer, member, admin and
/// master key. Callers without a valid credential always get 401 unless `public`.
struct Row {
    method: &'static str,
    /// The OpenAPI path this row exercises.
    route: &'static str,
    request: fn(&Fixture) -> (String, Option<Value>),
    expect: [u16; 4],
    public: bool,
}

fn rows() -> Vec<Row> {
    fn row(
        method: &'static str,
        route: &'static str,
        request: fn(&Fixture) -> (String, Option<Value>),
        expect: [u16; 4],
    ) -> Row {
        Row {
            method,
            route,
            request,
            expect,
            public: false,
        }
    }
    vec![
        Row {
            method: "POST",
            route: "/api/auth/login",
            request: |_| {
                (
                    "/api/auth/login".into(),
                    Some(json!({ "email": "member@example.com", "password": common::PASSWORD })),
                )
            },
            expect: [200, 200, 200, 200],
            public: true,
        },
        row(
            "GET",
            "/api/auth/me",
            |_| ("/api/auth/me".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "POST",
            "/api/auth/refresh",
            |_| ("/api/auth/refresh".into(), None),
            [200, 200, 200, 400],
        ),
        row(
            "GET",
            "/api/users",
            |_| ("/api/users".into(), None),
            [200, 403, 200, 200],
        ),
        row(
            "POST",
            "/api/users",
            |f| {
                (
                    "/api/users".into(),
                    Some(
                        json!({ "email": format!("new{}@example.com", f.n), "password": "a-long-enough-password", "role": "member" }),
                    ),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "GET",
            "/api/users/{id}",
            |f| (format!("/api/users/{}", f.other_user), None),
            [200, 403, 200, 200],
        ),
        row(
            "GET",
            "/api/users/{id}",
            |f| (format!("/api/users/{}", f.member), None),
            [200, 200, 200, 200],
        ),
        row(
            "PATCH",
            "/api/users/{id}",
            |f| {
                (
                    format!("/api/users/{}", f.other_user),
                    Some(json!({ "role": "viewer" })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/users/{id}",
            |f| {
                (
                    format!("/api/users/{}", f.member),
                    Some(
                        json!({ "password": common::PASSWORD, "current_password": common::PASSWORD }),
                    ),
                )
            },
            [403, 200, 200, 200],
        ),
        row(
            "PATCH",
            "/api/users/{id}",
            |f| {
                (
                    format!("/api/users/{}", f.member),
                    Some(json!({ "role": "admin" })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "DELETE",
            "/api/users/{id}",
            |f| (format!("/api/users/{}", f.other_user), None),
            [403, 403, 204, 204],
        ),
        row(
            "GET",
            "/api/teams",
            |_| ("/api/teams".into(), None),
            [200, 403, 200, 200],
        ),
        row(
            "POST",
            "/api/teams",
            |f| {
                (
                    "/api/teams".into(),
                    Some(json!({ "name": format!("new-team-{}", f.n) })),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "GET",
            "/api/teams/{id}",
            |f| (format!("/api/teams/{}", f.team), None),
            [200, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/teams/{id}",
            |f| {
                (
                    format!("/api/teams/{}", f.team),
                    Some(json!({ "name": format!("renamed-{}", f.n) })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "DELETE",
            "/api/teams/{id}",
            |f| (format!("/api/teams/{}", f.team), None),
            [403, 403, 204, 204],
        ),
        row(
            "PUT",
            "/api/teams/{id}/members/{user_id}",
            |f| (format!("/api/teams/{}/members/{}", f.team, f.member), None),
            [403, 403, 204, 204],
        ),
        row(
            "DELETE",
            "/api/teams/{id}/members/{user_id}",
            |f| {
                (
                    format!("/api/teams/{}/members/{}", f.team, f.other_user),
                    None,
                )
            },
            [403, 403, 204, 204],
        ),
        row(
            "GET",
            "/api/keys",
            |_| ("/api/keys".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/keys",
            |f| (format!("/api/keys?user_id={}", f.other_user), None),
            [200, 403, 200, 200],
        ),
        row(
            "POST",
            "/api/keys",
            |_| ("/api/keys".into(), Some(json!({ "name": "new" }))),
            [403, 201, 201, 201],
        ),
        row(
            "POST",
            "/api/keys",
            |f| {
                (
                    "/api/keys".into(),
                    Some(json!({ "name": "for other", "user_id": f.other_user })),
                )
            },
            [403, 403, 201, 201],
        ),
        // A member's own key: within what an admin allows their keys, never beyond.
        row(
            "POST",
            "/api/keys",
            |_| {
                (
                    "/api/keys".into(),
                    Some(
                        json!({ "name": "within", "rpm_limit": 10, "allowed_models": ["gpt-4o-mini"] }),
                    ),
                )
            },
            [403, 201, 201, 201],
        ),
        row(
            "POST",
            "/api/keys",
            |_| {
                (
                    "/api/keys".into(),
                    Some(json!({ "name": "over", "rpm_limit": 1000 })),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "POST",
            "/api/keys",
            |_| {
                (
                    "/api/keys".into(),
                    Some(json!({ "name": "elsewhere", "allowed_models": ["gpt-4o"] })),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "POST",
            "/api/keys",
            |f| {
                (
                    "/api/keys".into(),
                    Some(json!({ "name": "team key", "team_id": f.team })),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "GET",
            "/api/keys/{id}",
            |f| (format!("/api/keys/{}", f.own_key), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/keys/{id}",
            |f| (format!("/api/keys/{}", f.other_key), None),
            [200, 404, 200, 200],
        ),
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.own_key),
                    Some(json!({ "name": "renamed" })),
                )
            },
            [403, 200, 200, 200],
        ),
        // Limits are the admin's grant: a member may not lift them from their own key.
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.own_key),
                    Some(json!({ "rpm_limit": null })),
                )
            },
            [403, 403, 200, 200],
        ),
        // Tightening within the policy is the member's to do; loosening is not.
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.own_key),
                    Some(json!({ "rpm_limit": 50, "allowed_models": ["gpt-4o-mini"] })),
                )
            },
            [403, 200, 200, 200],
        ),
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.own_key),
                    Some(json!({ "rpm_limit": 500 })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.own_key),
                    Some(json!({ "allowed_models": ["gpt-4o"] })),
                )
            },
            [403, 403, 200, 200],
        ),
        // What members' keys may have is the admin's to set, on users and teams.
        row(
            "PATCH",
            "/api/users/{id}",
            |f| {
                (
                    format!("/api/users/{}", f.member),
                    Some(json!({ "key_policy": { "key_limits": { "rpm_limit": 1000 } } })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/teams/{id}",
            |f| {
                (
                    format!("/api/teams/{}", f.team),
                    Some(json!({ "key_policy": { "allowed_models": null } })),
                )
            },
            [403, 403, 200, 200],
        ),
        // A key of the member's that belongs to a team is the admin's to manage.
        row(
            "POST",
            "/api/keys/{id}/rotate",
            |f| (format!("/api/keys/{}/rotate", f.own_team_key), None),
            [403, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/keys/{id}",
            |f| {
                (
                    format!("/api/keys/{}", f.other_key),
                    Some(json!({ "rpm_limit": 5 })),
                )
            },
            [403, 404, 200, 200],
        ),
        row(
            "POST",
            "/api/keys/{id}/revoke",
            |f| (format!("/api/keys/{}/revoke", f.own_key), None),
            [403, 200, 200, 200],
        ),
        row(
            "POST",
            "/api/keys/{id}/revoke",
            |f| (format!("/api/keys/{}/revoke", f.other_key), None),
            [403, 404, 200, 200],
        ),
        row(
            "POST",
            "/api/keys/{id}/rotate",
            |f| (format!("/api/keys/{}/rotate", f.own_key), None),
            [403, 200, 200, 200],
        ),
        row(
            "POST",
            "/api/keys/{id}/rotate",
            |f| (format!("/api/keys/{}/rotate", f.other_key), None),
            [403, 404, 200, 200],
        ),
        row(
            "GET",
            "/api/providers",
            |_| ("/api/providers".into(), None),
            [200, 403, 200, 200],
        ),
        row(
            "POST",
            "/api/providers",
            |f| {
                (
                    "/api/providers".into(),
                    Some(
                        json!({ "name": format!("p-{}", f.n), "kind": "openai", "api_key": "sk-abcdefgh" }),
                    ),
                )
            },
            [403, 403, 201, 201],
        ),
        row(
            "GET",
            "/api/providers/{id}",
            |f| (format!("/api/providers/{}", f.provider), None),
            [200, 403, 200, 200],
        ),
        row(
            "PATCH",
            "/api/providers/{id}",
            |f| {
                (
                    format!("/api/providers/{}", f.provider),
                    Some(json!({ "api_key": "sk-rotated-1234" })),
                )
            },
            [403, 403, 200, 200],
        ),
        row(
            "DELETE",
            "/api/providers/{id}",
            |f| (format!("/api/providers/{}", f.provider), None),
            [403, 403, 204, 204],
        ),
        row(
            "GET",
            "/api/usage",
            |_| ("/api/usage".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/usage",
            |f| (format!("/api/usage?user_id={}", f.other_user), None),
            [200, 403, 200, 200],
        ),
        row(
            "GET",
            "/api/usage/series",
            |_| ("/api/usage/series?group_by=key".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/usage/export",
            |_| ("/api/usage/export?group_by=user".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/usage/outcomes",
            |_| ("/api/usage/outcomes?limit=5".into(), None),
            [200, 200, 200, 200],
        ),
        // Everyone signed in; members see model names only (checked in api.rs).
        row(
            "GET",
            "/api/routes",
            |_| ("/api/routes".into(), None),
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/audit",
            |_| ("/api/audit".into(), None),
            [200, 403, 200, 200],
        ),
        row(
            "GET",
            "/api/cache/stats",
            |_| ("/api/cache/stats".into(), None),
            [200, 403, 200, 200],
        ),
        // The admin API alone here has no cache to purge: admins get 422, naming it.
        row(
            "DELETE",
            "/api/cache",
            |_| ("/api/cache".into(), None),
            [403, 403, 422, 422],
        ),
    ]
}

fn expected(row: &Row, caller: Caller) -> u16 {
    match caller {
        Caller::Viewer => row.expect[0],
        Caller::Member => row.expect[1],
        Caller::Admin => row.expect[2],
        Caller::Master => row.expect[3],
        _ if row.public => row.expect[2],
        _ => 401,
    }
}

async fn walk(app: App) {
    let mut failures = Vec::new();
    let mut cells = 0;
    for row in rows() {
        for caller in CALLERS {
            let f = fixture(&app).await;
            let (path, body) = (row.request)(&f);
            let token = token(&app, caller).await;
            let reply = app.call(row.method, &path, token.as_deref(), body).await;
            cells += 1;
            let want = expected(&row, caller);
            if reply.status != want {
                failures.push(format!(
                    "{} {path} as {caller:?}: got {}, want {want}: {}",
                    row.method,
                    reply.status,
                    reply.text.chars().take(200).collect::<String>()
                ));
            }
            // Every refusal is in the one error shape.
            if reply.status >= 400 {
                assert!(
                    reply.body["error"]["message"].is_string()
                        && reply.body["error"]["type"].is_string(),
                    "{} {path}: {}",
                    row.method,
                    reply.text
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

both!(matrix, walk);

/// The matrix names every operation of the OpenAPI document (and nothing else).
#[test]
fn matrix_covers_every_route() {
    let spec = serde_json::to_value(tollgate_admin::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let walked: BTreeSet<String> = rows()
        .iter()
        .map(|r| format!("{} {}", r.method, r.route))
        .collect();
    assert_eq!(walked, documented);
}
