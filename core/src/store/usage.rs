//! Usage events: the gateway's metering inserts them (idempotent by `event_id`) together
//! with their daily rollup, and sums over them, e.g. to rebuild a budget's spend counter
//! the quota store lost.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, TransactionSession, TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait, Iden, InsertStatement, OnConflict, Query},
};

use super::{StoreError, entity::usage_event};

/// Inserts events and adds them to the daily rollup (`usage_daily`), in one transaction.
/// An event id already stored is skipped — in both — so writing the same event twice (a
/// replay of the spill file, say) counts it once. One statement inserts the batch and
/// answers which events it stored (`ON CONFLICT DO NOTHING RETURNING`): only those are
/// rolled up, with no look-up of the ids first.
pub async fn insert_events<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    events: &[usage_event::Model],
) -> Result<(), StoreError> {
    use usage_event::Column as C;
    let mut unique = HashSet::with_capacity(events.len());
    let batch: Vec<&usage_event::Model> = events
        .iter()
        .filter(|e| unique.insert(e.event_id.as_str()))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let models = batch.iter().map(|e| usage_event::ActiveModel {
        id: NotSet,
        ..(*e).clone().into()
    });
    let mut insert = usage_event::Entity::insert_many(models)
        // No conflict target: on PostgreSQL the unique key is (event_id, occurred_at), the
        // partitioned table's (a replayed event carries the time it had); on SQLite it is
        // event_id.
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    insert.returning_col(C::EventId);
    let txn = db.begin().await?;
    let stored: HashSet<String> = txn
        .query_all(&insert)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "event_id"))
        .collect::<Result<_, _>>()?;
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
    let mut sums: BTreeMap<(String, i64, i64, i64, &str), [i64; 4]> = BTreeMap::new();
    for e in events {
        let day = e.occurred_at.format("%Y-%m-%d").to_string();
        let scope = (
            day,
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
                day.into(),
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

/// The UTC midnights bounding the whole past days after `since` (all days when `None`),
/// which the daily rollup answers for: `(first, today)`, if any.
pub fn whole_days(
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    let midnight = |t: DateTime<Utc>| {
        t.date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(t, |d| d.and_utc())
    };
    let today = midnight(now);
    let first = since.map(|t| {
        let floor = midnight(t);
        if floor == t {
            floor
        } else {
            floor + chrono::Duration::days(1)
        }
    });
    first.is_none_or(|f| f < today).then_some((first, today))
}

/// Micro-USD spent by `who` since `since` (all time when `None`): the daily rollup for
/// whole past days (their raw events may be gone, see `usage.retention`), the events for
/// the rest.
pub async fn spent<C: ConnectionTrait>(
    db: &C,
    who: Spender,
    since: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    use usage_event::Column as C;
    let days = whole_days(since, Utc::now());
    let mut query = usage_event::Entity::find().select_only().expr_as(
        Expr::cust("CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT)"),
        "spent",
    );
    query = match who {
        Spender::Key(id) => query.filter(C::KeyId.eq(id)),
        Spender::User(id) => query.filter(C::UserId.eq(id)),
        Spender::Team(id) => query.filter(C::TeamId.eq(id)),
    };
    if let Some(since) = since {
        query = query.filter(C::OccurredAt.gte(since));
    }
    if let Some((first, today)) = days {
        let mut outside = sea_orm::Condition::any().add(C::OccurredAt.gte(today));
        if let Some(first) = first {
            outside = outside.add(C::OccurredAt.lt(first));
        }
        query = query.filter(outside);
    }
    let raw: Option<i64> = query.into_tuple().one(db).await?;
    let Some((first, today)) = days else {
        return Ok(raw.unwrap_or(0));
    };
    let (column, id) = match who {
        Spender::Key(id) => (Daily::KeyId, id),
        Spender::User(id) => (Daily::UserId, id),
        Spender::Team(id) => (Daily::TeamId, id),
    };
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let mut rolled = Query::select();
    rolled
        .expr(Expr::cust(
            "CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT)",
        ))
        .from(Daily::Table)
        .and_where(Expr::col(column).eq(id))
        .and_where(Expr::col(Daily::Day).lt(day(today)));
    if let Some(first) = first {
        rolled.and_where(Expr::col(Daily::Day).gte(day(first)));
    }
    let rolled: i64 = match db.query_one(&rolled).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(raw.unwrap_or(0).saturating_add(rolled))
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
