//! PostgreSQL's monthly partitions of `usage_events` (made by migration 12): the gateway
//! makes them ahead of time, and usage retention drops a whole month at once when every day
//! in it is in the daily rollup. SQLite has one plain table: nothing here applies to it.

use chrono::{DateTime, Months, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use super::{StoreError, usage::Pruned};

/// Months past this one that always have a partition ready.
pub const AHEAD_MONTHS: i32 = 2;

/// Makes the partitions of this month and the next [`AHEAD_MONTHS`] that do not exist yet
/// (events that went to the default partition meanwhile move into theirs); how many it
/// made. Safe to run from many replicas at once.
pub async fn make_ahead<C: ConnectionTrait>(db: &C) -> Result<i32, StoreError> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(0);
    }
    let made = db
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT tollgate_usage_partitions_ahead($1)",
            [AHEAD_MONTHS.into()],
        ))
        .await?;
    Ok(match made {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    })
}

/// One month's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Partition {
    /// `usage_events_y2026m12` → December 2026; other names (the default partition) are
    /// not months.
    fn from_name(name: String) -> Option<Partition> {
        let rest = name.strip_prefix("usage_events_y")?;
        let (year, month) = rest.split_once('m')?;
        let first = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
        let next = first.checked_add_months(Months::new(1))?;
        Some(Partition {
            start: first.and_hms_opt(0, 0, 0)?.and_utc(),
            end: next.and_hms_opt(0, 0, 0)?.and_utc(),
            name,
        })
    }
}

/// The month partitions, oldest first (none on SQLite).
pub async fn months<C: ConnectionTrait>(db: &C) -> Result<Vec<Partition>, StoreError> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_events'::regclass",
        ))
        .await?;
    let mut months = Vec::new();
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        months.extend(Partition::from_name(name));
    }
    months.sort_by_key(|p| p.start);
    Ok(months)
}

/// Drops the oldest month partition that ends by `cutoff`, if each of its days is in the
/// rollup with at least as many requests as it has events; a month short in its rollup is
/// kept (and reported), and so are the later ones.
pub async fn drop_oldest_before<C: ConnectionTrait>(
    db: &C,
    cutoff: DateTime<Utc>,
) -> Result<Pruned, StoreError> {
    let Some(oldest) = months(db).await?.into_iter().find(|p| p.end <= cutoff) else {
        return Ok(Pruned::Nothing);
    };
    let per_day = db
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!(
                "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, COUNT(*) \
                 FROM {} GROUP BY 1 ORDER BY 1",
                oldest.name
            ),
        ))
        .await?;
    let rolled = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT day, CAST(SUM(requests) AS BIGINT) FROM usage_daily \
             WHERE day >= $1 AND day < $2 GROUP BY day",
            [
                oldest.start.format("%Y-%m-%d").to_string().into(),
                oldest.end.format("%Y-%m-%d").to_string().into(),
            ],
        ))
        .await?;
    let mut rolled_per_day = std::collections::HashMap::new();
    for row in rolled {
        let day: String = row.try_get_by_index(0)?;
        let requests: i64 = row.try_get_by_index(1)?;
        rolled_per_day.insert(day, requests);
    }
    let mut total = 0u64;
    for row in per_day {
        let day: String = row.try_get_by_index(0)?;
        let events: i64 = row.try_get_by_index(1)?;
        let rolled = rolled_per_day.get(&day).copied().unwrap_or(0);
        if rolled < events {
            return Ok(Pruned::NotRolledUp {
                day,
                events: u64::try_from(events).unwrap_or(0),
                rolled,
            });
        }
        total += u64::try_from(events).unwrap_or(0);
    }
    db.execute_unprepared(&format!("DROP TABLE {}", oldest.name))
        .await?;
    Ok(Pruned::DroppedMonth {
        partition: oldest.name,
        events: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_partitions_are_read_from_their_names() {
        let december = Partition::from_name("usage_events_y2026m12".into()).unwrap();
        assert_eq!(december.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(december.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(Partition::from_name("usage_events_default".into()), None);
        assert_eq!(Partition::from_name("usage_events_y2026m13".into()), None);
    }
}
