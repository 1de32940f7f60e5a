//! sea-orm entities, one per table.

pub mod audit_log;
pub mod user;
