//! Creating and listing users, shared by the CLI, the first-start bootstrap and the admin
//! API. Every change writes its audit row in the same transaction.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set, SqlErr, TransactionSession, TransactionTrait,
};

use super::entity::{
    audit_log,
    user::{self, Role},
};
use crate::secrets::hash_password;

pub const MIN_PASSWORD_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("email: {0}")]
    InvalidEmail(String),
    #[error("password: must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("email: a user with email {0} already exists")]
    DuplicateEmail(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Who made a change, as recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            ip: None,
        }
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub role: Role,
}

/// Checks and normalises an email address (trimmed, lower-case).
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(UserError::InvalidEmail(format!(
            "{email:?} is not an email address"
        )))
    }
}

/// Creates a user and its audit row in one transaction. Hashing runs on the caller's thread:
/// async callers should wrap this in `spawn_blocking` or hash first.
pub async fn create_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    new: NewUser<'_>,
    actor: &Actor,
) -> Result<user::Model, UserError> {
    let email = normalize_email(new.email)?;
    if new.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::WeakPassword);
    }
    let password_hash = hash_password(new.password).map_err(|e| UserError::Hash(e.to_string()))?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let created = user::ActiveModel {
        email: Set(email.clone()),
        password_hash: Set(password_hash),
        role: Set(new.role),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => UserError::DuplicateEmail(email.clone()),
        _ => UserError::Db(e),
    })?;
    audit_log::ActiveModel {
        occurred_at: Set(now),
        actor: Set(actor.name.clone()),
        action: Set("user.create".into()),
        target_type: Set("user".into()),
        target_id: Set(Some(created.id.to_string())),
        summary: Set(serde_json::json!({ "after": { "email": created.email, "role": created.role.as_str() } }).to_string()),
        request_ip: Set(actor.ip.clone()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn list_users<C: ConnectionTrait>(db: &C) -> Result<Vec<user::Model>, DbErr> {
    user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(db)
        .await
}

pub async fn count_active_admins<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::Disabled.eq(false))
        .count(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "ada@.com",
            "a da@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
