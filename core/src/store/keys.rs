//! API keys: issue, list, change, revoke and rotate, shared by the admin API and the CLI,
//! and the look-up by secret the gateway uses. Secrets are returned once, at creation or
//! rotation, and only their HMAC is stored.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde_json::json;

use super::{
    StoreError,
    audit::Actor,
    audit::AuditedChange,
    entity::{api_key, team, user},
};
use crate::limits::{LimitChanges, QuotaLimits};
use crate::secrets::{ServerSecret, generate_api_key};

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_ALLOWED_MODELS: usize = 256;

/// Limits and restrictions of a key; `None` means unlimited / unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub allowed_models: Option<Vec<String>>,
    pub quota: QuotaLimits,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct NewKey {
    pub name: String,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub limits: KeyLimits,
    /// Its requests use the response cache (normally `true`).
    pub cache_enabled: bool,
}

/// A key together with its secret, which exists only in this value.
pub struct IssuedKey {
    pub key: api_key::Model,
    pub secret: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &self.key.public_id)
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(StoreError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(name.to_string())
}

fn check_limits(limits: &KeyLimits, now: DateTime<Utc>) -> Result<(), StoreError> {
    limits.quota.check()?;
    if let Some(models) = &limits.allowed_models {
        if models.len() > MAX_ALLOWED_MODELS {
            return Err(StoreError::invalid(
                "allowed_models",
                format!("at most {MAX_ALLOWED_MODELS} models"),
            ));
        }
        if models.iter().any(|m| m.trim().is_empty() || m.len() > 256) {
            return Err(StoreError::invalid(
                "allowed_models",
                "model names must be 1 to 256 characters",
            ));
        }
    }
    if limits.expires_at.is_some_and(|at| at <= now) {
        return Err(StoreError::invalid("expires_at", "must be in the future"));
    }
    Ok(())
}

async fn check_owner<C: ConnectionTrait>(
    db: &C,
    user_id: Option<i64>,
    team_id: Option<i64>,
) -> Result<(), StoreError> {
    if let Some(id) = user_id
        && user::Entity::find_by_id(id).one(db).await?.is_none()
    {
        return Err(StoreError::invalid("user_id", format!("no user {id}")));
    }
    if let Some(id) = team_id
        && team::Entity::find_by_id(id).one(db).await?.is_none()
    {
        return Err(StoreError::invalid("team_id", format!("no team {id}")));
    }
    Ok(())
}

/// What the audit log records of a key: never the secret or its hash.
fn summary(k: &api_key::Model) -> serde_json::Value {
    let mut summary = json!({
        "name": k.name,
        "prefix": k.display_prefix,
        "user_id": k.user_id,
        "team_id": k.team_id,
        "allowed_models": k.allowed_models(),
        "cache_enabled": k.cache_enabled,
    });
    if let (Some(out), serde_json::Value::Object(limits)) =
        (summary.as_object_mut(), k.limits().summary())
    {
        out.extend(limits);
        out.insert("expires_at".into(), json!(k.expires_at));
        out.insert("revoked_at".into(), json!(k.revoked_at));
    }
    summary
}

fn models_json(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().map(|m| {
        let mut list: Vec<&str> = m.iter().map(|s| s.trim()).collect();
        list.sort_unstable();
        list.dedup();
        serde_json::Value::from(list).to_string()
    })
}

pub async fn create_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    secret: &ServerSecret,
    new: NewKey,
    actor: &Actor,
) -> Result<IssuedKey, StoreError> {
    let now = Utc::now();
    let name = check_name(&new.name)?;
    check_limits(&new.limits, now)?;
    let issued = generate_api_key(secret)?;
    let txn = AuditedChange::begin(db, actor).await?;
    check_owner(txn.conn(), new.user_id, new.team_id).await?;
    let l = new.limits;
    let mut key = api_key::ActiveModel {
        public_id: Set(issued.public_id.clone()),
        display_prefix: Set(issued.display_prefix.clone()),
        secret_hash: Set(secret.hash_api_key(&issued.secret)),
        previous_secret_hash: Set(None),
        previous_expires_at: Set(None),
        name: Set(name),
        user_id: Set(new.user_id),
        team_id: Set(new.team_id),
        allowed_models: Set(models_json(&l.allowed_models)),
        expires_at: Set(l.expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        cache_enabled: Set(new.cache_enabled),
        ..Default::default()
    };
    key.set_limits(l.quota);
    let key = key.insert(txn.conn()).await?;
    txn.commit(
        "key.create",
        "key",
        &key.public_id,
        json!({ "after": summary(&key) }),
    )
    .await?;
    Ok(IssuedKey {
        key,
        secret: issued.secret,
    })
}

/// Filters for [`list_keys`].
#[derive(Debug, Default)]
pub struct KeyFilter {
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub include_revoked: bool,
    /// Only keys in this state (overrides `include_revoked`).
    pub status: Option<KeyStatus>,
    /// Only keys whose name, public id or prefix contains this (case-insensitive).
    pub search: Option<String>,
}

/// A key's state at a moment: usable, past its expiry, or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

/// One page of keys (1-based) and the total number matching.
pub async fn list_keys<C: ConnectionTrait>(
    db: &C,
    filter: &KeyFilter,
    page: u64,
    per_page: u64,
) -> Result<(Vec<api_key::Model>, u64), StoreError> {
    let mut query = api_key::Entity::find().order_by_asc(api_key::Column::Id);
    if let Some(id) = filter.user_id {
        query = query.filter(api_key::Column::UserId.eq(id));
    }
    if let Some(id) = filter.team_id {
        query = query.filter(api_key::Column::TeamId.eq(id));
    }
    let now = Utc::now();
    query = match filter.status {
        Some(KeyStatus::Active) => query.filter(api_key::Column::RevokedAt.is_null()).filter(
            Condition::any()
                .add(api_key::Column::ExpiresAt.is_null())
                .add(api_key::Column::ExpiresAt.gt(now)),
        ),
        Some(KeyStatus::Expired) => query
            .filter(api_key::Column::RevokedAt.is_null())
            .filter(api_key::Column::ExpiresAt.lte(now)),
        Some(KeyStatus::Revoked) => query.filter(api_key::Column::RevokedAt.is_not_null()),
        None if !filter.include_revoked => query.filter(api_key::Column::RevokedAt.is_null()),
        None => query,
    };
    if let Some(text) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        // LOWER(…) LIKE: case-insensitive on SQLite and PostgreSQL alike; `%` and `_` in
        // the text are matched literally.
        let pattern = format!(
            "%{}%",
            text.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let like = |column: api_key::Column| {
            Expr::expr(Func::lower(Expr::col(column)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        query = query.filter(
            Condition::any()
                .add(like(api_key::Column::Name))
                .add(like(api_key::Column::PublicId))
                .add(like(api_key::Column::DisplayPrefix)),
        );
    }
    let paginator = query.paginate(db, per_page);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page.saturating_sub(1)).await?;
    Ok((items, total))
}

/// A key by its public id (`key_…`).
pub async fn get_key<C: ConnectionTrait>(
    db: &C,
    public_id: &str,
) -> Result<api_key::Model, StoreError> {
    api_key::Entity::find()
        .filter(api_key::Column::PublicId.eq(public_id))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("key {public_id}")))
}

/// Changes to a key: `None` keeps a field; `Some(None)` clears a limit.
#[derive(Debug, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub allowed_models: Option<Option<Vec<String>>>,
    pub limits: LimitChanges,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub cache_enabled: Option<bool>,
}

impl KeyChanges {
    /// Whether the change touches limits (as opposed to name and expiry only).
    pub fn touches_limits(&self) -> bool {
        self.allowed_models.is_some() || !self.limits.is_empty()
    }
}

pub async fn update_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    public_id: &str,
    changes: KeyChanges,
    actor: &Actor,
) -> Result<api_key::Model, StoreError> {
    let now = Utc::now();
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_key(txn.conn(), public_id).await?;
    let name = changes.name.as_deref().map(check_name).transpose()?;
    let limits = KeyLimits {
        allowed_models: changes
            .allowed_models
            .clone()
            .unwrap_or_else(|| before.allowed_models()),
        quota: before.limits().apply(&changes.limits),
        // Only a new expiry must lie in the future; an unchanged one is left alone.
        expires_at: changes.expires_at.flatten(),
    };
    check_limits(&limits, now)?;
    let mut active = before.clone().into_active_model();
    if let Some(name) = name {
        active.name = Set(name);
    }
    active.allowed_models = Set(models_json(&limits.allowed_models));
    active.set_limits(limits.quota);
    if let Some(expires_at) = changes.expires_at {
        active.expires_at = Set(expires_at);
    }
    if let Some(cache_enabled) = changes.cache_enabled {
        active.cache_enabled = Set(cache_enabled);
    }
    active.updated_at = Set(now);
    let after = active.update(txn.conn()).await?;
    txn.commit(
        "key.update",
        "key",
        public_id,
        json!({ "before": summary(&before), "after": summary(&after) }),
    )
    .await?;
    Ok(after)
}

/// Revokes a key at once. Revoking twice keeps the first time.
pub async fn revoke_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    public_id: &str,
    actor: &Actor,
) -> Result<api_key::Model, StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_key(txn.conn(), public_id).await?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let now = Utc::now();
    let mut active = before.clone().into_active_model();
    active.revoked_at = Set(Some(now));
    active.previous_secret_hash = Set(None);
    active.previous_expires_at = Set(None);
    active.updated_at = Set(now);
    let after = active.update(txn.conn()).await?;
    txn.commit(
        "key.revoke",
        "key",
        public_id,
        json!({ "before": summary(&before), "after": summary(&after) }),
    )
    .await?;
    Ok(after)
}

/// Gives a key a new secret. The old secret keeps working for `grace`, then stops; a
/// second rotation within the grace period ends the first old secret at once.
pub async fn rotate_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    secret: &ServerSecret,
    public_id: &str,
    grace: Duration,
    actor: &Actor,
) -> Result<IssuedKey, StoreError> {
    if grace < Duration::zero() || grace > Duration::days(30) {
        return Err(StoreError::invalid(
            "grace_seconds",
            "must be between 0 and 30 days",
        ));
    }
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_key(txn.conn(), public_id).await?;
    if before.revoked_at.is_some() {
        return Err(StoreError::conflict(
            "id",
            format!("key {public_id} is revoked and cannot be rotated"),
        ));
    }
    let issued = generate_api_key(secret)?;
    let now = Utc::now();
    let mut active = before.clone().into_active_model();
    active.previous_secret_hash = Set(Some(before.secret_hash.clone()));
    active.previous_expires_at = Set(Some(now + grace));
    active.secret_hash = Set(secret.hash_api_key(&issued.secret));
    active.display_prefix = Set(issued.display_prefix.clone());
    active.updated_at = Set(now);
    let key = active.update(txn.conn()).await?;
    txn.commit(
        "key.rotate",
        "key",
        public_id,
        json!({
            "before": { "prefix": before.display_prefix },
            "after": { "prefix": key.display_prefix, "previous_valid_until": key.previous_expires_at },
        }),
    )
    .await?;
    Ok(IssuedKey {
        key,
        secret: issued.secret,
    })
}

/// Why a presented key is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Unknown,
    Revoked,
    Expired,
    /// The secret was replaced by a rotation and its grace period is over.
    Rotated,
    /// The user owning the key is disabled (or gone).
    OwnerDisabled,
}

/// What the gateway caches about a key: the record, matched by the hash of the presented
/// secret, and whether its owner is disabled.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key: api_key::Model,
    /// The presented secret matched the previous secret of a rotation, not the current one.
    pub via_previous_secret: bool,
    pub owner_disabled: bool,
    /// Limits of the owning user and team, which all their keys share.
    pub user_limits: QuotaLimits,
    pub team_limits: QuotaLimits,
}

impl KeyRecord {
    /// Whether the key may be used at `now`; the reason when not.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), KeyRejection> {
        if self.key.revoked_at.is_some() {
            return Err(KeyRejection::Revoked);
        }
        if self.key.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyRejection::Expired);
        }
        if self.via_previous_secret && self.key.previous_expires_at.is_none_or(|at| now >= at) {
            return Err(KeyRejection::Rotated);
        }
        if self.owner_disabled {
            return Err(KeyRejection::OwnerDisabled);
        }
        Ok(())
    }
}

/// Looks a key up by the HMAC of a presented secret (current or previous).
pub async fn find_by_hash<C: ConnectionTrait>(
    db: &C,
    hash: &str,
) -> Result<Option<KeyRecord>, StoreError> {
    let found = api_key::Entity::find()
        .filter(
            Condition::any()
                .add(api_key::Column::SecretHash.eq(hash))
                .add(api_key::Column::PreviousSecretHash.eq(hash)),
        )
        .one(db)
        .await?;
    let Some(key) = found else {
        return Ok(None);
    };
    let (owner_disabled, user_limits) = match key.user_id {
        Some(id) => match user::Entity::find_by_id(id).one(db).await? {
            Some(u) => (u.disabled, u.limits()),
            None => (true, QuotaLimits::default()),
        },
        None => (false, QuotaLimits::default()),
    };
    let team_limits = match key.team_id {
        Some(id) => team::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|t| t.limits())
            .unwrap_or_default(),
        None => QuotaLimits::default(),
    };
    Ok(Some(KeyRecord {
        via_previous_secret: key.secret_hash != hash,
        key,
        owner_disabled,
        user_limits,
        team_limits,
    }))
}

/// The `limit` keys used most recently that are not revoked, with their owners' limits,
/// for warming a gateway's key cache at start (three queries whatever the count).
pub async fn recently_used<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<KeyRecord>, StoreError> {
    use sea_orm::QuerySelect;
    let keys = api_key::Entity::find()
        .filter(api_key::Column::RevokedAt.is_null())
        .filter(api_key::Column::LastUsedAt.is_not_null())
        .order_by_desc(api_key::Column::LastUsedAt)
        .limit(limit)
        .all(db)
        .await?;
    let user_ids: Vec<i64> = keys.iter().filter_map(|k| k.user_id).collect();
    let team_ids: Vec<i64> = keys.iter().filter_map(|k| k.team_id).collect();
    let users: std::collections::HashMap<i64, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(user_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let teams: std::collections::HashMap<i64, team::Model> = team::Entity::find()
        .filter(team::Column::Id.is_in(team_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    Ok(keys
        .into_iter()
        .map(|key| {
            // As `find_by_hash` reads them: a key whose owner is gone counts as disabled.
            let (owner_disabled, user_limits) = match key.user_id {
                Some(id) => users
                    .get(&id)
                    .map_or((true, QuotaLimits::default()), |u| (u.disabled, u.limits())),
                None => (false, QuotaLimits::default()),
            };
            let team_limits = key
                .team_id
                .and_then(|id| teams.get(&id))
                .map(|t| t.limits())
                .unwrap_or_default();
            KeyRecord {
                via_previous_secret: false,
                key,
                owner_disabled,
                user_limits,
                team_limits,
            }
        })
        .collect())
}

/// Finds the key a presented secret belongs to and checks it as of `now`.
pub async fn authenticate<C: ConnectionTrait>(
    db: &C,
    secret: &ServerSecret,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<Result<api_key::Model, KeyRejection>, StoreError> {
    let hash = secret.hash_api_key(presented);
    Ok(match find_by_hash(db, &hash).await? {
        None => Err(KeyRejection::Unknown),
        Some(record) => record.check(now).map(|()| record.key),
    })
}

/// Marks keys as used (batched by the gateway, off the request path).
pub async fn touch_last_used<C: ConnectionTrait>(
    db: &C,
    ids: Vec<i64>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    api_key::Entity::update_many()
        .col_expr(
            api_key::Column::LastUsedAt,
            sea_orm::sea_query::Expr::value(at),
        )
        .filter(api_key::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(())
}

/// A change after which gateways must forget what they cached about keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum KeyChange {
    /// One key (by public id): revoked, rotated or changed.
    Key(String),
    /// Every key of a user: disabled, deleted.
    User(i64),
    /// Every key of a team: deleted.
    Team(i64),
    /// A stored provider credential was created, changed or deleted: gateways reload their
    /// config to pick it up (no key is affected).
    Credentials,
}

/// Removes the keys a user owns (their audit history stays).
pub(super) async fn delete_owned_by_user<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
) -> Result<(), StoreError> {
    api_key::Entity::delete_many()
        .filter(api_key::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}
