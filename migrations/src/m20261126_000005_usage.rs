//! Usage: one event per finished request (idempotent by `event_id`, so a replayed batch is
//! never counted twice) and a daily rollup per key and model for fast reports.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    Id,
    EventId,
    RequestId,
    OccurredAt,
    KeyId,
    UserId,
    TeamId,
    Model,
    Deployment,
    PromptTokens,
    CompletionTokens,
    CostMicroUsd,
    Status,
    LatencyMs,
    TtftMs,
    /// Tokens were estimated because the upstream reported no usage.
    Estimated,
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    Id,
    /// UTC day, `YYYY-MM-DD`.
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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UsageEvents::Table)
                .col(big_pk_auto(UsageEvents::Id))
                .col(string_len_uniq(UsageEvents::EventId, 64))
                .col(string_len(UsageEvents::RequestId, 128))
                .col(timestamp_with_time_zone(UsageEvents::OccurredAt))
                .col(big_integer_null(UsageEvents::KeyId))
                .col(big_integer_null(UsageEvents::UserId))
                .col(big_integer_null(UsageEvents::TeamId))
                .col(string_len(UsageEvents::Model, 256))
                .col(string_len(UsageEvents::Deployment, 64))
                .col(big_integer(UsageEvents::PromptTokens))
                .col(big_integer(UsageEvents::CompletionTokens))
                .col(big_integer(UsageEvents::CostMicroUsd))
                .col(integer(UsageEvents::Status))
                .col(integer(UsageEvents::LatencyMs))
                .col(integer_null(UsageEvents::TtftMs))
                .col(boolean(UsageEvents::Estimated).default(false))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_occurred_at")
                .table(UsageEvents::Table)
                .col(UsageEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_key_time")
                .table(UsageEvents::Table)
                .col(UsageEvents::KeyId)
                .col(UsageEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(UsageDaily::Table)
                .col(big_pk_auto(UsageDaily::Id))
                .col(string_len(UsageDaily::Day, 10))
                .col(big_integer_null(UsageDaily::KeyId))
                .col(big_integer_null(UsageDaily::UserId))
                .col(big_integer_null(UsageDaily::TeamId))
                .col(string_len(UsageDaily::Model, 256))
                .col(big_integer(UsageDaily::Requests))
                .col(big_integer(UsageDaily::PromptTokens))
                .col(big_integer(UsageDaily::CompletionTokens))
                .col(big_integer(UsageDaily::CostMicroUsd))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_daily_day_key_model")
                .table(UsageDaily::Table)
                .col(UsageDaily::Day)
                .col(UsageDaily::KeyId)
                .col(UsageDaily::Model)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UsageDaily::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(UsageEvents::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
