//! Client API keys. Only an HMAC-SHA256 of the secret is stored (under a server secret),
//! with a short display prefix; a rotated key keeps its previous hash until a grace time.

use sea_orm_migration::{prelude::*, schema::*};

use crate::{m20261126_000001_users::Users, m20261126_000002_teams::Teams};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    /// Stable public identifier, e.g. `key_3fa9…`, used in URLs and logs.
    PublicId,
    /// The first characters of the secret, shown to help people recognise a key.
    DisplayPrefix,
    SecretHash,
    /// The hash of the secret before the last rotation, valid until `previous_expires_at`.
    PreviousSecretHash,
    PreviousExpiresAt,
    Name,
    UserId,
    TeamId,
    /// JSON array of model names; NULL means every model.
    AllowedModels,
    RpmLimit,
    TpmLimit,
    ConcurrencyLimit,
    BudgetMicroUsd,
    /// `day`, `month` or `total`.
    BudgetPeriod,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(big_pk_auto(ApiKeys::Id))
                .col(string_len_uniq(ApiKeys::PublicId, 64))
                .col(string_len(ApiKeys::DisplayPrefix, 32))
                .col(string_len_uniq(ApiKeys::SecretHash, 64))
                .col(string_len_null(ApiKeys::PreviousSecretHash, 64))
                .col(timestamp_with_time_zone_null(ApiKeys::PreviousExpiresAt))
                .col(string_len(ApiKeys::Name, 128))
                .col(big_integer_null(ApiKeys::UserId))
                .col(big_integer_null(ApiKeys::TeamId))
                .col(text_null(ApiKeys::AllowedModels))
                .col(big_integer_null(ApiKeys::RpmLimit))
                .col(big_integer_null(ApiKeys::TpmLimit))
                .col(big_integer_null(ApiKeys::ConcurrencyLimit))
                .col(big_integer_null(ApiKeys::BudgetMicroUsd))
                .col(string_len_null(ApiKeys::BudgetPeriod, 8))
                .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
                .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                .col(timestamp_with_time_zone(ApiKeys::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_api_keys_user")
                        .from(ApiKeys::Table, ApiKeys::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_api_keys_team")
                        .from(ApiKeys::Table, ApiKeys::TeamId)
                        .to(Teams::Table, Teams::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A rotated key is looked up by its previous hash during the grace period.
        m.create_index(
            Index::create()
                .name("idx_api_keys_previous_secret_hash")
                .table(ApiKeys::Table)
                .col(ApiKeys::PreviousSecretHash)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_api_keys_user")
                .table(ApiKeys::Table)
                .col(ApiKeys::UserId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_api_keys_team")
                .table(ApiKeys::Table)
                .col(ApiKeys::TeamId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
