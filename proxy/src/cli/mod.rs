//! Operator commands that work on the database directly: `tollgate keys …` and
//! `tollgate users …`; and `tollgate probe`, the container health check.

pub mod keys;
pub mod probe;
pub mod users;
