//! The schema's single source of truth. Every migration runs on SQLite and PostgreSQL,
//! inside a transaction on both, and can be rolled back.

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

mod m20261126_000001_users;
mod m20261126_000002_teams;
mod m20261126_000003_api_keys;
mod m20261126_000004_provider_credentials;
mod m20261126_000005_usage;
mod m20261126_000006_audit_log;
mod m20261126_000007_owner_limits;
mod m20261126_000008_usage_owner_indexes;
mod m20261206_000009_key_policy;
mod m20261206_000010_usage_errors;
mod m20261206_000011_usage_rollup;
mod m20261206_000012_usage_partitions;
mod m20261207_000013_usage_cache;
mod m20261207_000014_key_cache;
mod m20261207_000015_usage_owner_rollup;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_users::Migration),
            Box::new(m20261126_000002_teams::Migration),
            Box::new(m20261126_000003_api_keys::Migration),
            Box::new(m20261126_000004_provider_credentials::Migration),
            Box::new(m20261126_000005_usage::Migration),
            Box::new(m20261126_000006_audit_log::Migration),
            Box::new(m20261126_000007_owner_limits::Migration),
            Box::new(m20261126_000008_usage_owner_indexes::Migration),
            Box::new(m20261206_000009_key_policy::Migration),
            Box::new(m20261206_000010_usage_errors::Migration),
            Box::new(m20261206_000011_usage_rollup::Migration),
            Box::new(m20261206_000012_usage_partitions::Migration),
            Box::new(m20261207_000013_usage_cache::Migration),
            Box::new(m20261207_000014_key_cache::Migration),
            Box::new(m20261207_000015_usage_owner_rollup::Migration),
        ]
    }
}
