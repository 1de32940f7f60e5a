//! Quotas for users and teams: the same limits a key has, applied to all of an owner's keys
//! together (a request must fit its key's, its user's and its team's limits).

use sea_orm_migration::{prelude::*, schema::*};

use crate::{m20261126_000001_users::Users, m20261126_000002_teams::Teams};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Column {
    RpmLimit,
    TpmLimit,
    ConcurrencyLimit,
    BudgetMicroUsd,
    /// `day`, `month` or `total`.
    BudgetPeriod,
}

const LIMITS: [Column; 5] = [
    Column::RpmLimit,
    Column::TpmLimit,
    Column::ConcurrencyLimit,
    Column::BudgetMicroUsd,
    Column::BudgetPeriod,
];

fn column(limit: Column) -> ColumnDef {
    match limit {
        Column::BudgetPeriod => string_len_null(limit, 8),
        other => big_integer_null(other),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for limit in LIMITS {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(column(limit))
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table(Teams::Table)
                    .add_column(column(limit))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for limit in LIMITS {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(limit)
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table(Teams::Table)
                    .drop_column(limit)
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
