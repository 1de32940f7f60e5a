//! The gateway's connections to its stores — the database pool and the Redis client — on a
//! runtime of their own. Pingora runs each service on its own runtimes; I/O objects belong
//! to the runtime that created them, so store work is spawned here and awaited from the
//! request path through a join handle.

pub mod database;
pub mod login_attempts;
pub mod pubsub;
pub mod redis;

use std::time::Duration;

use anyhow::Context;
use sea_orm_migration::sea_orm::DatabaseConnection;

pub struct Backend {
    runtime: &'static tokio::runtime::Runtime,
    pub db: DatabaseConnection,
    pub redis: Option<fred::clients::Client>,
}

/// Worker threads of the store runtime (Redis, the database, the metering task).
const STORE_THREADS: usize = 2;

/// How long a store call on the request path may take before the gateway gives up on it.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

impl Backend {
    pub fn start(database_url: &str, redis_url: Option<&str>) -> anyhow::Result<Backend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(STORE_THREADS)
            .thread_name("tollgate-store")
            .enable_all()
            .build()?;
        // Lives as long as the process: dropping a runtime inside another one panics.
        let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
        crate::memory::note_runtime(runtime.handle(), STORE_THREADS);
        let db = runtime.block_on(database::connect(database_url))?;
        let redis = redis_url
            .map(|url| runtime.block_on(crate::backend::redis::connect(url)))
            .transpose()
            .context("connecting to Redis")?;
        Ok(Backend { runtime, db, redis })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Runs `work` on the store runtime and waits for it, at most [`STORE_TIMEOUT`].
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let mut task = self.runtime.spawn(work);
        match tokio::time::timeout(STORE_TIMEOUT, &mut task).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::error!("store task failed: {e}");
                None
            }
            Err(_) => {
                // Nobody waits for it any more: do not let slow queries pile up.
                task.abort();
                None
            }
        }
    }
}

/// A backend on a migrated SQLite file in `dir`, for unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn test_backend(dir: &std::path::Path) -> std::sync::Arc<Backend> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    let backend = std::sync::Arc::new(Backend::start(&url, None).unwrap());
    backend
        .handle()
        .block_on(database::migrate(&backend.db))
        .unwrap();
    backend
}
