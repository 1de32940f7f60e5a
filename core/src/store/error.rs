//! The store's one error type. The admin API maps it to HTTP in one place; the CLI prints it.

use sea_orm::DbErr;

use crate::secrets::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A value failed validation; `field` names it as the API's JSON does.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The change conflicts with existing data (a duplicate name, the last admin, …).
    #[error("{field}: {message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("secret: {0}")]
    Secret(#[from] SecretError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

impl StoreError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Conflict {
            field,
            message: message.into(),
        }
    }

    /// Maps a unique-constraint violation on `field` to a conflict, other errors unchanged.
    pub fn from_insert(err: DbErr, field: &'static str, message: impl Into<String>) -> Self {
        match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                StoreError::conflict(field, message)
            }
            _ => StoreError::Db(err),
        }
    }
}
