//! Provider credentials managed through the admin API. The secret is stored encrypted with
//! AES-256-GCM: a random 96-bit nonce per value, the record id as associated data, and the
//! id of the encryption key so the master key can be rotated.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProviderCredentials {
    Table,
    Id,
    Name,
    Kind,
    BaseUrl,
    SecretCiphertext,
    SecretNonce,
    KeyId,
    /// The last four characters of the secret, for masked display.
    SecretLast4,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ProviderCredentials::Table)
                .col(big_pk_auto(ProviderCredentials::Id))
                .col(string_len_uniq(ProviderCredentials::Name, 64))
                .col(string_len(ProviderCredentials::Kind, 32))
                .col(string_len_null(ProviderCredentials::BaseUrl, 2048))
                .col(blob(ProviderCredentials::SecretCiphertext))
                .col(blob(ProviderCredentials::SecretNonce))
                .col(string_len(ProviderCredentials::KeyId, 32))
                .col(string_len(ProviderCredentials::SecretLast4, 8))
                .col(timestamp_with_time_zone(ProviderCredentials::CreatedAt))
                .col(timestamp_with_time_zone(ProviderCredentials::UpdatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ProviderCredentials::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
