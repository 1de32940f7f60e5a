//! Test helpers shared by Tollgate's crates. Every test gets a database of its own — a fresh
//! PostgreSQL database (created here, dropped when the handle goes) or a SQLite file in a
//! temporary directory — so tests run in parallel without touching each other; the Redis
//! Cluster tests get a cluster of their own.

mod redis_cluster;
pub mod tls;

use sea_orm::{ConnectionTrait, Database};

pub use redis_cluster::RedisCluster;

/// The PostgreSQL server tests use; override with `TOLLGATE_TEST_POSTGRES`.
pub fn postgres_server() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The two database backends every store test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of a test's own; dropped (Postgres) or deleted (SQLite) with this handle.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _sqlite_dir: Option<tempfile::TempDir>,
    postgres: Option<PgDatabase>,
}

impl TestDatabase {
    pub async fn create(backend: Backend, tag: &str) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("tollgate.db").display()
                );
                TestDatabase {
                    url,
                    backend,
                    _sqlite_dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let pg = PgDatabase::create(tag).await;
                TestDatabase {
                    url: pg.url.clone(),
                    backend,
                    _sqlite_dir: None,
                    postgres: Some(pg),
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

/// A fresh PostgreSQL database, dropped (with its connections) when this handle goes.
pub struct PgDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl PgDatabase {
    pub async fn create(tag: &str) -> PgDatabase {
        let server = postgres_server();
        let name = format!(
            "tollgate_{tag}_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let admin = Database::connect(format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = admin.close().await;
        PgDatabase {
            url: format!("{server}/{name}"),
            name,
            server,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a tokio runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(format!("{server}/postgres")).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
