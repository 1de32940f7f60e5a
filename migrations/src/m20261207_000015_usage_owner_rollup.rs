//! Budgets are rebuilt from the daily rollup alone (it is written in the events' own
//! transaction, today's row included), so the hot `usage_events` table loses its three
//! owner-and-time indexes: every event inserted went into six B-trees, now three (the
//! table, `event_id`, `occurred_at`). The rollup, whose rows change once per batch and
//! group rather than once per event, gets the owner indexes instead.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum UsageEvents {
    Table,
    KeyId,
    UserId,
    TeamId,
    OccurredAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum UsageDaily {
    Table,
    KeyId,
    UserId,
    TeamId,
    Day,
}

/// (index name on the events, index name on the rollup, owner column of each).
const OWNERS: [(&str, &str, UsageEvents, UsageDaily); 3] = [
    (
        "idx_usage_events_key_time",
        "idx_usage_daily_key_day",
        UsageEvents::KeyId,
        UsageDaily::KeyId,
    ),
    (
        "idx_usage_events_user_time",
        "idx_usage_daily_user_day",
        UsageEvents::UserId,
        UsageDaily::UserId,
    ),
    (
        "idx_usage_events_team_time",
        "idx_usage_daily_team_day",
        UsageEvents::TeamId,
        UsageDaily::TeamId,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (events, daily, _, owner) in OWNERS {
            m.drop_index(
                Index::drop()
                    .name(events)
                    .table(UsageEvents::Table)
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name(daily)
                    .table(UsageDaily::Table)
                    .col(owner)
                    .col(UsageDaily::Day)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (events, daily, owner, _) in OWNERS {
            m.drop_index(
                Index::drop()
                    .name(daily)
                    .table(UsageDaily::Table)
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name(events)
                    .table(UsageEvents::Table)
                    .col(owner)
                    .col(UsageEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
