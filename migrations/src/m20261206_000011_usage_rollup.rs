//! `usage_daily` becomes the rollup the usage reports read for whole days: one row per UTC
//! day, key, user, team and model (0 where there is none, so the unique index also covers
//! master-key and JWT traffic: NULLs would never conflict), filled by the usage writer in
//! the same transaction as the events. Existing events are rolled up here.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum UsageDaily {
    Table,
    Day,
    KeyId,
    UserId,
    TeamId,
    Model,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_usage_daily_day_key_model")
                .table(UsageDaily::Table)
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared("DELETE FROM usage_daily").await?;
        let day = match m.get_database_backend() {
            DatabaseBackend::Postgres => "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            _ => "strftime('%Y-%m-%d', occurred_at)",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO usage_daily (day, key_id, user_id, team_id, model, requests, prompt_tokens, completion_tokens, cost_micro_usd) \
             SELECT {day}, COALESCE(key_id, 0), COALESCE(user_id, 0), COALESCE(team_id, 0), model, \
             COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_micro_usd), 0) \
             FROM usage_events GROUP BY {day}, COALESCE(key_id, 0), COALESCE(user_id, 0), COALESCE(team_id, 0), model"
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_daily_scope")
                .table(UsageDaily::Table)
                .col(UsageDaily::Day)
                .col(UsageDaily::KeyId)
                .col(UsageDaily::UserId)
                .col(UsageDaily::TeamId)
                .col(UsageDaily::Model)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_usage_daily_scope")
                .table(UsageDaily::Table)
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared("DELETE FROM usage_daily")
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

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
