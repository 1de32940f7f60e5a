//! Users of the admin API, shared by the CLI, the first-start bootstrap and the admin API.
//! Every change writes its audit row in the same transaction.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

use crate::{limits::LimitChanges, store::key_policy::PolicyChanges};

use super::{
    StoreError,
    audit::Actor,
    audit::AuditedChange,
    entity::user::{self, Role},
};
use crate::secrets::hash_password;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A user to create. The password arrives hashed: hashing is slow on purpose, so async
/// callers run [`hash_new_password`] on a blocking thread first.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: String,
    pub role: Role,
}

/// Checks a new password's strength and hashes it with Argon2id (CPU-heavy: tens of ms).
pub fn hash_new_password(password: &str) -> Result<String, StoreError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(StoreError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(StoreError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_LEN} characters"),
        ));
    }
    hash_password(password).map_err(|e| StoreError::invalid("password", e.to_string()))
}

/// Checks and normalises an email address (trimmed, lower-case).
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
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
        Err(StoreError::invalid(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

fn summary(u: &user::Model) -> serde_json::Value {
    json!({ "email": u.email, "role": u.role.as_str(), "disabled": u.disabled, "limits": u.limits().summary(), "key_policy": u.key_policy().summary() })
}

/// Creates a user and its audit row in one transaction.
pub async fn create_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    new: NewUser<'_>,
    actor: &Actor,
) -> Result<user::Model, StoreError> {
    let email = normalize_email(new.email)?;
    let now = Utc::now();
    let txn = AuditedChange::begin(db, actor).await?;
    let created = user::ActiveModel {
        email: Set(email.clone()),
        password_hash: Set(new.password_hash),
        role: Set(new.role),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn.conn())
    .await
    .map_err(|e| {
        StoreError::from_insert(
            e,
            "email",
            format!("a user with email {email} already exists"),
        )
    })?;
    txn.commit(
        "user.create",
        "user",
        created.id,
        json!({ "after": summary(&created) }),
    )
    .await?;
    Ok(created)
}

/// Filters for [`list_users`].
#[derive(Debug, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// A case-insensitive substring of the email.
    pub email: Option<String>,
}

/// One page of users (1-based) and the total number matching.
pub async fn list_users<C: ConnectionTrait>(
    db: &C,
    filter: &UserFilter,
    page: u64,
    per_page: u64,
) -> Result<(Vec<user::Model>, u64), StoreError> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Id);
    if let Some(role) = filter.role {
        query = query.filter(user::Column::Role.eq(role));
    }
    if let Some(disabled) = filter.disabled {
        query = query.filter(user::Column::Disabled.eq(disabled));
    }
    if let Some(email) = &filter.email {
        query = query.filter(user::Column::Email.contains(email.trim().to_ascii_lowercase()));
    }
    let paginator = query.paginate(db, per_page);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page.saturating_sub(1)).await?;
    Ok((items, total))
}

pub async fn get_user<C: ConnectionTrait>(db: &C, id: i64) -> Result<user::Model, StoreError> {
    user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

pub async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<user::Model>, StoreError> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?)
}

pub async fn count_active_admins<C: ConnectionTrait>(db: &C) -> Result<u64, StoreError> {
    Ok(user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::Disabled.eq(false))
        .count(db)
        .await?)
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Already hashed with [`hash_new_password`].
    pub password_hash: Option<String>,
    /// Quota limits shared by all the user's keys.
    pub limits: LimitChanges,
    /// What the user's own keys may have at most.
    pub key_policy: PolicyChanges,
}

/// Whether removing `user`'s admin rights would leave no active admin.
async fn is_last_admin<C: ConnectionTrait>(db: &C, u: &user::Model) -> Result<bool, StoreError> {
    Ok(u.role == Role::Admin && !u.disabled && count_active_admins(db).await? <= 1)
}

pub async fn update_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    changes: UserChanges,
    actor: &Actor,
) -> Result<user::Model, StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_user(txn.conn(), id).await?;
    let loses_admin =
        changes.role.is_some_and(|r| r != Role::Admin) || changes.disabled == Some(true);
    if loses_admin && is_last_admin(txn.conn(), &before).await? {
        return Err(StoreError::conflict(
            "role",
            "this is the last active admin; make another admin first",
        ));
    }
    let limits = before.limits().apply(&changes.limits);
    limits.check()?;
    let policy = before.key_policy().apply(&changes.key_policy)?;
    let mut active = before.clone().into_active_model();
    active.set_limits(limits);
    let (allowed_models, key_limits) = policy.to_columns();
    active.allowed_models = Set(allowed_models);
    active.key_limits = Set(key_limits);
    if let Some(role) = changes.role {
        active.role = Set(role);
    }
    if let Some(disabled) = changes.disabled {
        active.disabled = Set(disabled);
    }
    let password_changed = changes.password_hash.is_some();
    if let Some(hash) = changes.password_hash {
        active.password_hash = Set(hash);
    }
    active.updated_at = Set(Utc::now());
    let after = active.update(txn.conn()).await?;
    txn.commit(
        "user.update",
        "user",
        id,
        json!({ "before": summary(&before), "after": summary(&after), "password_changed": password_changed }),
    )
    .await?;
    Ok(after)
}

/// Deletes a user; their keys and team memberships go with them.
pub async fn delete_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_user(txn.conn(), id).await?;
    if is_last_admin(txn.conn(), &before).await? {
        return Err(StoreError::conflict(
            "id",
            "this is the last active admin; make another admin first",
        ));
    }
    // Explicit rather than relying on ON DELETE CASCADE: SQLite enforces it only with
    // foreign keys switched on.
    super::keys::delete_owned_by_user(txn.conn(), id).await?;
    super::entity::team_member::Entity::delete_many()
        .filter(super::entity::team_member::Column::UserId.eq(id))
        .exec(txn.conn())
        .await?;
    user::Entity::delete_by_id(id).exec(txn.conn()).await?;
    txn.commit(
        "user.delete",
        "user",
        id,
        json!({ "before": summary(&before) }),
    )
    .await?;
    Ok(())
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

    #[test]
    fn short_passwords_are_refused() {
        assert!(matches!(
            hash_new_password("short"),
            Err(StoreError::Invalid {
                field: "password",
                ..
            })
        ));
    }
}
