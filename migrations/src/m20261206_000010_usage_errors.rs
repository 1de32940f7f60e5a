//! Why a request was refused or failed: the OpenAI error `code` the gateway answered with
//! (`rate_limit_requests`, `api_key_revoked`, `upstream_timeout`, …) and its message, so
//! operators can see per key why requests were turned away.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum UsageEvents {
    Table,
    ErrorCode,
    ErrorMessage,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .add_column(string_len_null(UsageEvents::ErrorCode, 64))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .add_column(text_null(UsageEvents::ErrorMessage))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [UsageEvents::ErrorCode, UsageEvents::ErrorMessage] {
            m.alter_table(
                Table::alter()
                    .table(UsageEvents::Table)
                    .drop_column(column)
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
