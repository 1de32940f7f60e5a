//! The database of record, seen through sea-orm entities (the schema itself lives in the
//! `migrations` crate), and the operations the admin API and CLI share.

pub mod entity;
pub mod users;
