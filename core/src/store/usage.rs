//! Usage events: the gateway's metering inserts them (idempotent by `event_id`) together
//! with their daily rollup, and sums over them, e.g. to rebuild a budget's spend counter
//! the quota store lost.

use std::{
    collections::{BTreeMap, HashSet},
    sync::OnceLock,
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionSession, TransactionTrait, Value,
    sea_query::{Alias, Expr, ExprTrait, Iden, InsertStatement, OnConflict, Query},
};

use super::{StoreError, entity::usage_event};

/// Inserts events and adds them to the daily rollup (`usage_daily`), in one transaction.
/// An event id already stored is skipped — in both — so writing the same event twice (a
/// replay of the spill file, say) counts it once. Each statement inserts a chunk of the
/// batch and answers which events it stored (`ON CONFLICT DO NOTHING RETURNING`): only
/// those are rolled up, with no look-up of the ids first.
///
/// The rows are bound straight into statement texts made once per chunk size, and chunk
/// sizes are powers of two: a batch of any size runs at most [`CHUNK_SIZES`] statements
/// the connection has already prepared, instead of building the query row by row and
/// preparing every odd-sized batch anew.
pub async fn insert_events<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    events: &[usage_event::Model],
) -> Result<(), StoreError> {
    let mut unique = HashSet::with_capacity(events.len());
    let batch: Vec<&usage_event::Model> = events
        .iter()
        .filter(|e| unique.insert(e.event_id.as_str()))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let mut stored = HashSet::with_capacity(batch.len());
    let mut rest = batch.as_slice();
    while !rest.is_empty() {
        let size = chunk_size(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut values = Vec::with_capacity(size * EVENT_COLUMNS.len());
        for e in chunk {
            push_event(e, &mut values);
        }
        let statement = Statement::from_sql_and_values(backend, insert_sql(backend, size), values);
        for row in txn.query_all_raw(statement).await? {
            stored.insert(row.try_get::<String>("", "event_id")?);
        }
    }
    let fresh: Vec<&usage_event::Model> = batch
        .into_iter()
        .filter(|e| stored.contains(&e.event_id))
        .collect();
    if !fresh.is_empty() {
        txn.execute(&rollup(&fresh)?).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The event columns an insert names (all but the database's `id`), in bind order.
const EVENT_COLUMNS: [&str; 18] = [
    "event_id",
    "request_id",
    "occurred_at",
    "key_id",
    "user_id",
    "team_id",
    "model",
    "deployment",
    "prompt_tokens",
    "completion_tokens",
    "cost_micro_usd",
    "status",
    "latency_ms",
    "ttft_ms",
    "estimated",
    "error_code",
    "error_message",
    "cache",
];

/// The rows one insert statement takes, largest first: 18 columns × 256 rows stays well
/// under both databases' limits on bound values.
const CHUNK_SIZES: usize = 9;

/// The largest power of two, at most 256, that fits in `left` (≥ 1) rows.
fn chunk_size(left: usize) -> usize {
    let size = 1usize << (CHUNK_SIZES - 1);
    if left >= size {
        size
    } else {
        1 << left.ilog2()
    }
}

/// Binds one event's values in [`EVENT_COLUMNS`] order — the same values sea-orm's
/// active model would bind, so the stored rows read back alike.
fn push_event(e: &usage_event::Model, out: &mut Vec<Value>) {
    out.extend([
        Value::from(e.event_id.as_str()),
        Value::from(e.request_id.as_str()),
        Value::from(e.occurred_at),
        Value::from(e.key_id),
        Value::from(e.user_id),
        Value::from(e.team_id),
        Value::from(e.model.as_str()),
        Value::from(e.deployment.as_str()),
        Value::from(e.prompt_tokens),
        Value::from(e.completion_tokens),
        Value::from(e.cost_micro_usd),
        Value::from(e.status),
        Value::from(e.latency_ms),
        Value::from(e.ttft_ms),
        Value::from(e.estimated),
        Value::from(e.error_code.clone()),
        Value::from(e.error_message.clone()),
        Value::from(e.cache.clone()),
    ]);
}

/// The insert statement for `rows` events (a power of two up to 256), made once per
/// backend and size.
fn insert_sql(backend: DatabaseBackend, rows: usize) -> String {
    static POSTGRES: OnceLock<Vec<String>> = OnceLock::new();
    static OTHER: OnceLock<Vec<String>> = OnceLock::new();
    let postgres = backend == DatabaseBackend::Postgres;
    let texts = if postgres { &POSTGRES } else { &OTHER };
    let texts = texts.get_or_init(|| {
        (0..CHUNK_SIZES)
            .map(|power| insert_text(postgres, 1 << power))
            .collect()
    });
    texts
        .get(rows.ilog2() as usize)
        .cloned()
        .unwrap_or_else(|| insert_text(postgres, rows))
}

fn insert_text(postgres: bool, rows: usize) -> String {
    use std::fmt::Write;
    let columns = EVENT_COLUMNS.len();
    let mut sql = format!(
        "INSERT INTO usage_events ({}) VALUES ",
        EVENT_COLUMNS.join(", ")
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if postgres {
                let _ = write!(sql, "${}", row * columns + column + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    // No conflict target: on PostgreSQL the unique key is (event_id, occurred_at), the
    // partitioned table's (a replayed event carries the time it had); on SQLite it is
    // event_id.
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING event_id");
    sql
}

/// Rebuilds the daily rollup from the stored events, for events that did not come through
/// [`insert_events`] (an import, a test's fixtures).
pub async fn rebuild_rollup<C: ConnectionTrait + TransactionTrait>(
    db: &C,
) -> Result<(), StoreError> {
    let day = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        _ => "strftime('%Y-%m-%d', occurred_at)",
    };
    let txn = db.begin().await?;
    txn.execute_unprepared("DELETE FROM usage_daily").await?;
    txn.execute_unprepared(&format!(
        "INSERT INTO usage_daily (day, key_id, user_id, team_id, model, requests, prompt_tokens, completion_tokens, cost_micro_usd) \
         SELECT {day}, COALESCE(key_id, 0), COALESCE(user_id, 0), COALESCE(team_id, 0), model, \
         COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_micro_usd), 0) \
         FROM usage_events GROUP BY {day}, COALESCE(key_id, 0), COALESCE(user_id, 0), COALESCE(team_id, 0), model"
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The rollup columns, in insert order.
#[derive(Clone, Copy)]
enum Daily {
    Table,
    Day,
    KeyId,
    UserId,
    TeamId,
    Model,
    Requests,
    PromptTokens,
    CompletionTokens,
    CostMicroUsd,
}

impl Iden for Daily {
    fn unquoted(&self) -> &str {
        match self {
            Daily::Table => "usage_daily",
            Daily::Day => "day",
            Daily::KeyId => "key_id",
            Daily::UserId => "user_id",
            Daily::TeamId => "team_id",
            Daily::Model => "model",
            Daily::Requests => "requests",
            Daily::PromptTokens => "prompt_tokens",
            Daily::CompletionTokens => "completion_tokens",
            Daily::CostMicroUsd => "cost_micro_usd",
        }
    }
}

/// The events summed per UTC day, key, user, team and model (0 for none), added to the
/// rows already there.
fn rollup(events: &[&usage_event::Model]) -> Result<InsertStatement, StoreError> {
    // Grouped by the date itself: the day's text is made once per group, not per event.
    let mut sums: BTreeMap<(chrono::NaiveDate, i64, i64, i64, &str), [i64; 4]> = BTreeMap::new();
    for e in events {
        let scope = (
            e.occurred_at.date_naive(),
            e.key_id.unwrap_or(0),
            e.user_id.unwrap_or(0),
            e.team_id.unwrap_or(0),
            e.model.as_str(),
        );
        let sum = sums.entry(scope).or_default();
        sum[0] += 1;
        sum[1] += e.prompt_tokens;
        sum[2] += e.completion_tokens;
        sum[3] += e.cost_micro_usd;
    }
    let mut insert = Query::insert();
    insert.into_table(Daily::Table).columns([
        Daily::Day,
        Daily::KeyId,
        Daily::UserId,
        Daily::TeamId,
        Daily::Model,
        Daily::Requests,
        Daily::PromptTokens,
        Daily::CompletionTokens,
        Daily::CostMicroUsd,
    ]);
    for ((day, key, user, team, model), [requests, prompt, completion, cost]) in sums {
        insert
            .values([
                day.format("%Y-%m-%d").to_string().into(),
                key.into(),
                user.into(),
                team.into(),
                model.into(),
                requests.into(),
                prompt.into(),
                completion.into(),
                cost.into(),
            ])
            .map_err(|e| StoreError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
    }
    let add = |column: Daily| {
        (
            column,
            Expr::col((Daily::Table, column)).add(Expr::col((Alias::new("excluded"), column))),
        )
    };
    insert.on_conflict(
        OnConflict::columns([
            Daily::Day,
            Daily::KeyId,
            Daily::UserId,
            Daily::TeamId,
            Daily::Model,
        ])
        .values([
            add(Daily::Requests),
            add(Daily::PromptTokens),
            add(Daily::CompletionTokens),
            add(Daily::CostMicroUsd),
        ])
        .to_owned(),
    );
    Ok(insert.to_owned())
}

/// Whose events to sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spender {
    Key(i64),
    User(i64),
    Team(i64),
}

/// The first UTC midnight at or after `since`: the daily rollup answers for everything from
/// it on, today included (the writer adds to the rollup in the events' own transaction).
fn first_whole_day(since: DateTime<Utc>) -> DateTime<Utc> {
    let floor = since
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(since, |d| d.and_utc());
    if floor == since {
        floor
    } else {
        floor + chrono::Duration::days(1)
    }
}

/// Micro-USD spent by `who` since `since` (all time when `None`), from the daily rollup:
/// it is written in the same transaction as the events and outlives them (see
/// `usage.retention`). Only a `since` inside a day (budget periods start at midnight, so
/// never for them) reads that day's remaining events. The events carry no index by owner,
/// which keeps every insert cheaper; this sum needs none.
pub async fn spent<C: ConnectionTrait>(
    db: &C,
    who: Spender,
    since: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    use usage_event::Column as C;
    let first = since.map(first_whole_day);
    let (column, id) = match who {
        Spender::Key(id) => (Daily::KeyId, id),
        Spender::User(id) => (Daily::UserId, id),
        Spender::Team(id) => (Daily::TeamId, id),
    };
    let mut rolled = Query::select();
    rolled
        .expr(Expr::cust(
            "CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT)",
        ))
        .from(Daily::Table)
        .and_where(Expr::col(column).eq(id));
    if let Some(first) = first {
        rolled.and_where(Expr::col(Daily::Day).gte(first.format("%Y-%m-%d").to_string()));
    }
    let rolled: i64 = match db.query_one(&rolled).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    let (Some(since), Some(first)) = (since, first) else {
        return Ok(rolled);
    };
    if since == first {
        return Ok(rolled);
    }
    let mut partial = usage_event::Entity::find()
        .select_only()
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT)"),
            "spent",
        )
        .filter(C::OccurredAt.gte(since))
        .filter(C::OccurredAt.lt(first));
    partial = match who {
        Spender::Key(id) => partial.filter(C::KeyId.eq(id)),
        Spender::User(id) => partial.filter(C::UserId.eq(id)),
        Spender::Team(id) => partial.filter(C::TeamId.eq(id)),
    };
    let partial: Option<i64> = partial.into_tuple().one(db).await?;
    Ok(rolled.saturating_add(partial.unwrap_or(0)))
}

/// Requests of one model with one cache outcome in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOutcomeRow {
    pub model: String,
    /// `hit`, `miss` or `bypass`.
    pub outcome: String,
    pub requests: u64,
    /// Their prompt and completion tokens.
    pub tokens: u64,
}

/// The cache outcomes of the events since `since`, by model.
pub async fn cache_outcomes<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
) -> Result<Vec<CacheOutcomeRow>, StoreError> {
    use usage_event::Column as C;
    let rows: Vec<(String, String, i64, i64)> = usage_event::Entity::find()
        .select_only()
        .column(C::Model)
        .column(C::Cache)
        .expr_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT)"),
            "tokens",
        )
        .filter(C::Cache.is_not_null())
        .filter(C::OccurredAt.gte(since))
        .group_by(C::Model)
        .group_by(C::Cache)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(model, outcome, requests, tokens)| CacheOutcomeRow {
            model,
            outcome,
            requests: u64::try_from(requests).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
        })
        .collect())
}

/// What one retention step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    /// No event is older than the cutoff.
    Nothing,
    Deleted(u64),
    /// A whole month's partition was dropped (PostgreSQL), holding this many events.
    DroppedMonth {
        partition: String,
        events: u64,
    },
    /// The oldest day's rollup counts fewer requests than it has events: it is kept.
    NotRolledUp {
        day: String,
        events: u64,
        rolled: i64,
    },
}

/// Deletes events that occurred before `cutoff`, at most `batch` of the oldest day's at a
/// time, only if that day's rollup holds at least as many requests as there are events
/// left: a day that was never rolled up keeps its events.
pub async fn delete_rolled_up_before<C: ConnectionTrait>(
    db: &C,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<Pruned, StoreError> {
    use usage_event::Column as C;
    let Some(oldest) = usage_event::Entity::find()
        .select_only()
        .column(C::OccurredAt)
        .filter(C::OccurredAt.lt(cutoff))
        .order_by_asc(C::OccurredAt)
        .into_tuple::<DateTime<Utc>>()
        .one(db)
        .await?
    else {
        return Ok(Pruned::Nothing);
    };
    // One day at a time, oldest first.
    let day_start = oldest
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(oldest, |d| d.and_utc());
    let day_end = Ord::min(day_start + chrono::Duration::days(1), cutoff);
    let events = usage_event::Entity::find()
        .filter(C::OccurredAt.gte(day_start))
        .filter(C::OccurredAt.lt(day_end))
        .count(db)
        .await?;
    let mut rolled = Query::select();
    rolled
        .expr(Expr::cust("CAST(COALESCE(SUM(requests), 0) AS BIGINT)"))
        .from(Daily::Table)
        .and_where(Expr::col(Daily::Day).eq(day_start.format("%Y-%m-%d").to_string()));
    let rolled: i64 = match db.query_one(&rolled).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    if u64::try_from(rolled).unwrap_or(0) < events {
        return Ok(Pruned::NotRolledUp {
            day: day_start.format("%Y-%m-%d").to_string(),
            events,
            rolled,
        });
    }
    let ids: Vec<i64> = usage_event::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::OccurredAt.gte(day_start))
        .filter(C::OccurredAt.lt(day_end))
        .limit(batch)
        .into_tuple()
        .all(db)
        .await?;
    let deleted = usage_event::Entity::delete_many()
        .filter(C::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(Pruned::Deleted(deleted.rows_affected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_batch_splits_into_few_power_of_two_chunks() {
        for n in 1..=1_000usize {
            let (mut left, mut statements) = (n, 0);
            while left > 0 {
                let size = chunk_size(left);
                assert!(size.is_power_of_two() && size <= 256 && size <= left);
                left -= size;
                statements += 1;
            }
            assert!(statements <= n / 256 + CHUNK_SIZES, "{n}: {statements}");
        }
    }

    #[test]
    fn insert_texts_number_every_value() {
        let pg = insert_sql(DatabaseBackend::Postgres, 4);
        assert!(pg.starts_with("INSERT INTO usage_events (event_id, request_id, "));
        assert!(pg.contains("($1, $2, ") && pg.contains(", $72)"));
        assert!(!pg.contains("$73"));
        let lite = insert_sql(DatabaseBackend::Sqlite, 2);
        assert_eq!(lite.matches('?').count(), 2 * EVENT_COLUMNS.len());
        assert!(lite.ends_with(" ON CONFLICT DO NOTHING RETURNING event_id"));
    }
}
