//! `usage.retention`: raw usage events older than the retention period are deleted, a few
//! thousand at a time and off the request path, once their day is in the daily rollup —
//! the reports and budgets read whole days from it, so nothing they show changes. A day
//! whose rollup is short of its events keeps them (logged), and so do the days after it.

use std::time::Duration;

use chrono::Utc;
use sea_orm_migration::sea_orm::DatabaseConnection;
use tollgate_core::store::usage::{Pruned, delete_rolled_up_before};

use crate::metrics::shared;

/// Events deleted per statement: short transactions, no long lock on the table.
const BATCH: u64 = 5_000;
/// How often old events are looked for.
const INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes every hour on `runtime`, for as long as the process runs.
pub fn start(db: DatabaseConnection, retention: Duration, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            prune(&db, retention).await;
        }
    });
}

/// Deletes what is older than the retention period (counted from today's UTC midnight).
pub async fn prune(db: &DatabaseConnection, retention: Duration) -> u64 {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return 0;
    };
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |d| d.and_utc());
    let cutoff = today - retention;
    let mut deleted = 0;
    loop {
        match shared::database(
            "usage_retention",
            delete_rolled_up_before(db, cutoff, BATCH),
        )
        .await
        {
            Ok(Pruned::Deleted(0) | Pruned::Nothing) => break,
            Ok(Pruned::Deleted(n)) => {
                deleted += n;
                // Room for the writer between batches.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Pruned::NotRolledUp {
                day,
                events,
                rolled,
            }) => {
                tracing::warn!(
                    "usage retention: {day} has {events} events but its rollup counts {rolled} requests; its events (and later days') are kept"
                );
                break;
            }
            Err(e) => {
                tracing::warn!("usage retention: deleting old events failed: {e}");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!("usage retention: deleted {deleted} events from before {cutoff}");
    }
    deleted
}
