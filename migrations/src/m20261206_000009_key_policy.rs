//! What members' own keys may have at most, set by an admin on users and teams: the models
//! (`allowed_models`, a JSON array) and the per-key limits (`key_limits`, JSON).

use sea_orm_migration::{prelude::*, schema::*};

use crate::{m20261126_000001_users::Users, m20261126_000002_teams::Teams};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Column {
    AllowedModels,
    KeyLimits,
}

const COLUMNS: [Column; 2] = [Column::AllowedModels, Column::KeyLimits];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in COLUMNS {
            for table in [Users::Table.into_iden(), Teams::Table.into_iden()] {
                m.alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            for table in [Users::Table.into_iden(), Teams::Table.into_iden()] {
                m.alter_table(Table::alter().table(table).drop_column(column).to_owned())
                    .await?;
            }
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
