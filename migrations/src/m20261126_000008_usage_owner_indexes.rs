//! Per-user and per-team time-range indexes on usage events: budgets of users and teams are
//! rebuilt by summing their events of the period, and usage reports filter by them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    UserId,
    TeamId,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("idx_usage_events_user_time")
                .table(UsageEvents::Table)
                .col(UsageEvents::UserId)
                .col(UsageEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_team_time")
                .table(UsageEvents::Table)
                .col(UsageEvents::TeamId)
                .col(UsageEvents::OccurredAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_usage_events_team_time")
                .table(UsageEvents::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_usage_events_user_time")
                .table(UsageEvents::Table)
                .to_owned(),
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
