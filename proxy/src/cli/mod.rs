//! Operator commands that work on the database directly: `tollgate keys …` and
//! `tollgate users …`.

pub mod keys;
pub mod users;
