//! sea-orm entities, one per table.

pub mod api_key;
pub mod audit_log;
pub mod provider_credential;
pub mod team;
pub mod team_member;
pub mod usage_event;
pub mod user;
