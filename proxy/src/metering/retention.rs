//! `usage.retention`: raw usage events older than the retention period are deleted, a few
//! thousand at a time and off the request path, once their day is in the daily rollup —
//! the reports and budgets read whole days from it, so nothing they show changes. A day
//! whose rollup is short of its events keeps them (logged), and so do the days after it.
//! On PostgreSQL a month that is wholly past the cutoff goes as one partition drop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm_migration::sea_orm::{DatabaseBackend, DatabaseConnection};
use tollgate_core::store::{
    usage::{Pruned, delete_rolled_up_before},
    usage_partitions,
};

use crate::metrics::shared;

/// Events deleted per statement: short transactions, no long lock on the table.
const BATCH: u64 = 5_000;
/// How often old events are looked for.
const INTERVAL: Duration = Duration::from_secs(3600);
/// How often the months ahead are checked for partitions.
const PARTITION_INTERVAL: Duration = Duration::from_secs(6 * 3600);

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

/// Keeps the next months' `usage_events` partitions made (PostgreSQL): now, then every
/// few hours, so an event never waits for one (it would land in the default partition).
pub fn make_partitions(db: DatabaseConnection, runtime: &tokio::runtime::Handle) {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(PARTITION_INTERVAL);
        loop {
            tick.tick().await;
            match shared::database("usage_partitions", usage_partitions::make_ahead(&db)).await {
                Ok(0) => {}
                Ok(made) => tracing::info!("usage events: made {made} monthly partitions"),
                Err(e) => tracing::warn!("usage events: making monthly partitions failed: {e}"),
            }
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
    // Whole months first (PostgreSQL): a partition dropped, not its rows deleted.
    let (mut deleted, go_on) = drop_months(db, cutoff).await;
    if go_on {
        deleted += delete_batches(db, cutoff).await;
    }
    if deleted > 0 {
        tracing::info!("usage retention: deleted {deleted} events from before {cutoff}");
    }
    deleted
}

/// Drops the month partitions wholly before `cutoff`: the events they held, and whether
/// older days may go on being deleted (no month was kept for a short rollup, no error).
async fn drop_months(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> (u64, bool) {
    let mut dropped = 0;
    loop {
        match shared::database(
            "usage_retention",
            usage_partitions::drop_oldest_before(db, cutoff),
        )
        .await
        {
            Ok(Pruned::DroppedMonth { partition, events }) => {
                tracing::info!("usage retention: dropped {partition} ({events} events)");
                dropped += events;
            }
            Ok(Pruned::NotRolledUp {
                day,
                events,
                rolled,
            }) => {
                not_rolled_up(&day, events, rolled);
                return (dropped, false);
            }
            Ok(_) => return (dropped, true),
            Err(e) => {
                tracing::warn!("usage retention: dropping old partitions failed: {e}");
                return (dropped, false);
            }
        }
    }
}

/// Deletes the events before `cutoff`, a batch at a time, oldest day first.
async fn delete_batches(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> u64 {
    let mut deleted = 0;
    loop {
        match shared::database(
            "usage_retention",
            delete_rolled_up_before(db, cutoff, BATCH),
        )
        .await
        {
            Ok(Pruned::Deleted(0) | Pruned::Nothing | Pruned::DroppedMonth { .. }) => break,
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
                not_rolled_up(&day, events, rolled);
                break;
            }
            Err(e) => {
                tracing::warn!("usage retention: deleting old events failed: {e}");
                break;
            }
        }
    }
    deleted
}

fn not_rolled_up(day: &str, events: u64, rolled: i64) {
    tracing::warn!(
        "usage retention: {day} has {events} events but its rollup counts {rolled} requests; its events (and later days') are kept"
    );
}
