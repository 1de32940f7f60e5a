//! The audit log: one row per change made through the admin API, written in the same
//! transaction as the change. Summaries never contain secrets.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OccurredAt,
    /// Who acted, e.g. `user:12` or `master-key`.
    Actor,
    /// What was done, e.g. `key.revoke`.
    Action,
    TargetType,
    TargetId,
    /// JSON: the relevant fields before and after, secrets left out.
    Summary,
    RequestIp,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_pk_auto(AuditLog::Id))
                .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                .col(string_len(AuditLog::Actor, 128))
                .col(string_len(AuditLog::Action, 64))
                .col(string_len(AuditLog::TargetType, 32))
                .col(string_len_null(AuditLog::TargetId, 64))
                .col(text(AuditLog::Summary))
                .col(string_len_null(AuditLog::RequestIp, 64))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_log_occurred_at")
                .table(AuditLog::Table)
                .col(AuditLog::OccurredAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
