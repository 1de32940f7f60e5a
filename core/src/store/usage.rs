//! Usage events: the gateway's metering inserts them (idempotent by `event_id`), and
//! sums over them, e.g. to rebuild a budget's spend counter the quota store lost.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict},
};

use super::{StoreError, entity::usage_event};

/// Inserts events in one statement; an event id already stored is skipped, so writing the
/// same event twice (a replay) counts it once.
pub async fn insert_events<C: ConnectionTrait>(
    db: &C,
    events: &[usage_event::Model],
) -> Result<(), StoreError> {
    let models = events.iter().map(|e| usage_event::ActiveModel {
        id: NotSet,
        ..e.clone().into()
    });
    usage_event::Entity::insert_many(models)
        .on_conflict(
            OnConflict::column(usage_event::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Whose events to sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spender {
    Key(i64),
    User(i64),
    Team(i64),
}

/// Micro-USD spent by `who` since `since` (all time when `None`).
pub async fn spent<C: ConnectionTrait>(
    db: &C,
    who: Spender,
    since: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    use usage_event::Column as C;
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
    let total: Option<i64> = query.into_tuple().one(db).await?;
    Ok(total.unwrap_or(0))
}
