//! The test harness: the real admin router on 127.0.0.1:0 over a database of the test's own
//! (a fresh PostgreSQL database or a SQLite file), with users of every role.
#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::{Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;
use tollgate_admin::{
    AdminSettings, AdminState, DeploymentRoute, ModelRoute, RouteSource, auth::issue_token,
};
use tollgate_core::{
    secrets::ServerSecret,
    store::{
        Actor,
        entity::user::{self, Role},
        users::{self, NewUser},
    },
};
pub use tollgate_testkit::Backend;
use tollgate_testkit::TestDatabase;

pub const SECRET: &str = "test-secret-key-0123456789-abcdefghijklmnop";
pub const MASTER_KEY: &str = "tg_master_test_key_0123456789";
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// Runs a test body once per backend: `both!(name, |app| async move { … })`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = common::App::spawn(common::Backend::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app = common::App::spawn(common::Backend::Postgres).await;
                ($body)(app).await;
            }
        }
    };
}

pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    pub secret: Arc<ServerSecret>,
    pub admin: user::Model,
    pub member: user::Model,
    pub viewer: user::Model,
    pub backend: Backend,
    /// A password hash for fixtures (hashing per user would slow the tests down).
    pub password_hash: String,
    _database: TestDatabase,
}

/// The one browser origin the test app allows to call it (CORS).
pub const CORS_ORIGIN: &str = "https://admin.example.com";

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl App {
    pub async fn spawn(backend: Backend) -> App {
        let database = TestDatabase::create(backend, "admin").await;
        let db = Database::connect(&database.url).await.unwrap();
        tollgate_migrations::Migrator::up(&db, None).await.unwrap();
        let secret = Arc::new(ServerSecret::new(SECRET, &[]).unwrap());
        let password_hash = users::hash_new_password(PASSWORD).unwrap();
        let mut made = Vec::new();
        for (email, role) in [
            ("admin@example.com", Role::Admin),
            ("member@example.com", Role::Member),
            ("viewer@example.com", Role::Viewer),
        ] {
            made.push(
                users::create_user(
                    &db,
                    NewUser {
                        email,
                        password_hash: password_hash.clone(),
                        role,
                    },
                    &Actor::system("test"),
                )
                .await
                .unwrap(),
            );
        }
        let state = AdminState::new(
            db.clone(),
            secret.clone(),
            Some(MASTER_KEY.to_string()),
            AdminSettings {
                routes: RouteSource::fixed(vec![ModelRoute {
                    name: "gpt-4o".into(),
                    aliases: vec!["smart".into()],
                    strategy: "latency".into(),
                    retries: 2,
                    fallbacks: vec!["gpt-4o-mini".into()],
                    input_micro_usd_per_million: Some(2_500_000),
                    output_micro_usd_per_million: Some(10_000_000),
                    deployments: vec![DeploymentRoute {
                        provider: "mock".into(),
                        kind: "mock".into(),
                        base_url: None,
                        upstream_model: "gpt-4o-2024-08-06".into(),
                        weight: 3,
                        rpm: Some(100),
                        tpm: None,
                        state: Some("cooling_down".into()),
                        in_flight: Some(2),
                        ttfb_ms: Some(12.5),
                        last_error: Some("status 503".into()),
                    }],
                }]),
                cors_origins: vec![CORS_ORIGIN.into()],
                ..AdminSettings::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(tollgate_admin::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        let viewer = made.pop().unwrap();
        let member = made.pop().unwrap();
        let admin = made.pop().unwrap();
        App {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            db,
            secret,
            admin,
            member,
            viewer,
            backend,
            password_hash,
            _database: database,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// A session token for `user`.
    pub fn token(&self, user: &user::Model) -> String {
        issue_token(self.secret.jwt_key(), user, Duration::from_secs(600), None)
            .unwrap()
            .token
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    }

    /// A user created straight in the store.
    pub async fn make_user(&self, email: &str, role: Role) -> user::Model {
        users::create_user(
            &self.db,
            NewUser {
                email,
                password_hash: self.password_hash.clone(),
                role,
            },
            &Actor::system("test"),
        )
        .await
        .unwrap()
    }
}
