//! The database of record, seen through sea-orm entities (the schema itself lives in the
//! `migrations` crate), and the operations the admin API, the CLI and the gateway share.

pub mod audit;
pub mod entity;
mod error;
pub mod key_policy;
pub mod keys;
pub mod providers;
pub mod teams;
pub mod usage;
pub mod usage_partitions;
pub mod users;

pub use audit::Actor;
pub use error::StoreError;
