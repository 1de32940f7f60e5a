//! The database of record (users, keys, usage): PostgreSQL from `TOLLGATE_DATABASE_URL`, or
//! the embedded default, a SQLite file in the data directory. Pending migrations are applied
//! by `tollgate migrate` and at start-up.

use std::{path::Path, time::Duration};

use anyhow::Context;
use sea_orm_migration::{
    MigratorTrait,
    sea_orm::{
        ConnectOptions, Database, DatabaseConnection,
        sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    },
};
use tollgate_migrations::Migrator;

pub const DATABASE_URL_ENV: &str = "TOLLGATE_DATABASE_URL";

/// The configured database URL, or the embedded SQLite file under `data_dir`.
pub fn database_url(data_dir: &Path) -> anyhow::Result<String> {
    if let Ok(url) = std::env::var(DATABASE_URL_ENV)
        && !url.is_empty()
    {
        return Ok(url);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("tollgate.db").display()
    ))
}

pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    // SQLite writes one transaction at a time, and each connection keeps a page cache and
    // prepared statements of its own (megabytes once it has written usage batches): a few
    // suffice, and ones a burst opened are closed again when idle.
    let sqlite = url.starts_with("sqlite:");
    options
        .max_connections(if sqlite { 4 } else { 10 })
        .idle_timeout(Duration::from_secs(if sqlite { 30 } else { 600 }))
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // SQLite: a write-ahead log, synced at checkpoints rather than at every commit (a
        // commit is durable against a crash of the process, and may be lost only with the
        // machine's power; usage events are written in batches of many requests), and
        // writers from other processes (the CLI, `tollgate admin`) wait for the lock
        // instead of failing.
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
        });
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database ({})", redact(url)))
}

/// Applies pending migrations; returns the names of those applied.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await
        .context("reading the migration state")?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    Migrator::up(db, None)
        .await
        .context("applying migrations")?;
    Ok(pending)
}

/// Connects to the database of `data_dir`'s config, applies pending migrations and runs
/// `work` on a short-lived runtime (start-up and CLI commands, never the request path).
/// `work` gets the URL, the connection and the names of the migrations just applied.
pub fn with_migrated<T>(
    data_dir: &Path,
    work: impl AsyncFnOnce(&str, &DatabaseConnection, Vec<String>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = database_url(data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = connect(&url).await?;
        let applied = migrate(&db).await?;
        let result = work(&url, &db, applied).await;
        db.close().await?;
        result
    })
}

/// A URL fit for messages: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/tollgate"),
            "postgres://app:***@db:5432/tollgate"
        );
        assert_eq!(
            redact("sqlite://.tollgate/tollgate.db?mode=rwc"),
            "sqlite://.tollgate/tollgate.db?mode=rwc"
        );
    }
}
