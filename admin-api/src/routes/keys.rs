//! API keys. The secret is in the response to create and rotate, and nowhere else. Admins
//! manage every key, viewers read them, members manage only keys they own.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tollgate_core::limits::double_option;
use tollgate_core::store::{
    entity::{
        api_key::{self, BudgetPeriod},
        user::Role,
    },
    key_policy::{self, Exceeds},
    keys::{self, IssuedKey, KeyChange, KeyChanges, KeyFilter, KeyLimits, KeyStatus, NewKey},
};
use utoipa::{IntoParams, ToSchema};

use super::views::KeyView;
use crate::{
    AdminState,
    auth::{Caller, Principal},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParam, QueryParams},
    page::{self, Page},
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    pub page: Option<u64>,
    pub per_page: Option<u64>,
    /// Keys owned by this user.
    pub user_id: Option<i64>,
    /// Keys owned by this team.
    pub team_id: Option<i64>,
    /// Include revoked keys (default false; ignored when `status` is given).
    pub include_revoked: Option<bool>,
    /// Only keys that are `active`, `expired` or `revoked`.
    #[param(inline)]
    pub status: Option<KeyStatusName>,
    /// Only keys whose name, id or prefix contains this text (case-insensitive).
    pub search: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatusName {
    Active,
    Expired,
    Revoked,
}

impl From<KeyStatusName> for KeyStatus {
    fn from(s: KeyStatusName) -> KeyStatus {
        match s {
            KeyStatusName::Active => KeyStatus::Active,
            KeyStatusName::Expired => KeyStatus::Expired,
            KeyStatusName::Revoked => KeyStatus::Revoked,
        }
    }
}

/// List keys, never with their secrets (admins and viewers: all; members: their own).
#[utoipa::path(get, operation_id = "keys_list", path = "/api/keys", tag = "keys", params(KeyQuery),
    responses((status = 200, description = "OK", body = Page<KeyView>), (status = 403, description = "The caller's role does not allow this", body = ErrorBody)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<KeyQuery>,
) -> ApiResult<Json<Page<KeyView>>> {
    let (page, per_page) = page::resolve(q.page, q.per_page)?;
    let mut filter = KeyFilter {
        user_id: q.user_id,
        team_id: q.team_id,
        include_revoked: q.include_revoked.unwrap_or(false),
        status: q.status.map(Into::into),
        search: q.search,
    };
    if caller.role() == Role::Member {
        if q.team_id.is_some() || q.user_id.is_some_and(|id| Some(id) != caller.user_id()) {
            return Err(ApiError::forbidden("members may list only their own keys"));
        }
        filter.user_id = caller.user_id();
    }
    let (items, total) = keys::list_keys(state.db(), &filter, page, per_page).await?;
    Ok(Json(Page::of(items, page, per_page, total)))
}

tollgate_core::with_quota_limits! { request
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// The owning user; members may only give their own id (the default for them).
    pub user_id: Option<i64>,
    /// The owning team (admins only).
    pub team_id: Option<i64>,
    /// Models the key may use; omit or `null` for all.
    pub allowed_models: Option<Vec<String>>,
} then {
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether its requests use the response cache (default `true`).
    pub cache_enabled: Option<bool>,
}
}

/// A key with its secret: returned by create and rotate only.
#[derive(Serialize, ToSchema)]
pub struct IssuedKeyView {
    /// The full key, shown this once: store it now.
    pub secret: String,
    #[serde(flatten)]
    pub key: KeyView,
}

impl From<IssuedKey> for IssuedKeyView {
    fn from(issued: IssuedKey) -> Self {
        IssuedKeyView {
            secret: issued.secret,
            key: issued.key.into(),
        }
    }
}

/// Create a key; the response holds its secret, shown this once.
#[utoipa::path(post, operation_id = "keys_create", path = "/api/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, description = "Created", body = IssuedKeyView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateKey>,
) -> ApiResult<(StatusCode, Json<IssuedKeyView>)> {
    let user_id = match caller.role() {
        Role::Admin => req.user_id,
        Role::Member => {
            if req.team_id.is_some() {
                return Err(ApiError::forbidden("only admins create team keys"));
            }
            if req.user_id.is_some_and(|id| Some(id) != caller.user_id()) {
                return Err(ApiError::forbidden(
                    "members may create keys only for themselves",
                ));
            }
            caller.user_id()
        }
        Role::Viewer => return Err(ApiError::forbidden("viewers cannot change anything")),
    };
    let mut quota = req.limits();
    let mut allowed_models = req.allowed_models;
    // A member's key gets at most what an admin allows their keys; where it asks for
    // nothing, it gets that.
    if caller.role() == Role::Member
        && let Principal::User(member) = &caller.principal
    {
        let policy = key_policy::for_member(state.db(), member).await?;
        (allowed_models, quota) = policy
            .fit_new(allowed_models, quota)
            .map_err(beyond_policy)?;
    }
    let new = NewKey {
        name: req.name,
        user_id,
        team_id: req.team_id,
        limits: KeyLimits {
            allowed_models,
            quota,
            expires_at: req.expires_at,
        },
        cache_enabled: req.cache_enabled.unwrap_or(true),
    };
    let issued = keys::create_key(state.db(), state.secret(), new, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// A member's key beyond what an admin allows their keys.
fn beyond_policy(e: Exceeds) -> ApiError {
    ApiError::forbidden(format!(
        "{}: {} (admins set what members' keys may have: the user's and team's key_policy)",
        e.field, e.message
    ))
}

/// The key `id`, if the caller may see it: members see only their own (others are 404,
/// so they learn nothing of other people's keys).
async fn visible_key(state: &AdminState, caller: &Caller, id: &str) -> ApiResult<api_key::Model> {
    let key = keys::get_key(state.db(), id).await?;
    if caller.role() == Role::Member && key.user_id != caller.user_id() {
        return Err(ApiError::NotFound(format!("key {id}")));
    }
    Ok(key)
}

/// Get a key, without its secret.
#[utoipa::path(get, operation_id = "keys_get", path = "/api/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's public id, `key_…`")),
    responses((status = 200, description = "OK", body = KeyView), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<KeyView>> {
    Ok(Json(visible_key(&state, &caller, &id).await?.into()))
}

tollgate_core::with_quota_limits! { patch
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    pub name: Option<String>,
    /// A list to restrict, `null` to allow every model; omit to keep.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
} then {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Whether its requests use the response cache; omit to keep.
    pub cache_enabled: Option<bool>,
}
}

/// Change a key's name, models, limits, budget or expiry.
#[utoipa::path(patch, operation_id = "keys_update", path = "/api/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's public id, `key_…`")), request_body = UpdateKey,
    responses((status = 200, description = "OK", body = KeyView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    JsonBody(req): JsonBody<UpdateKey>,
) -> ApiResult<Json<KeyView>> {
    let key = visible_key(&state, &caller, &id).await?;
    caller.require_writer_of(&key)?;
    let limits = req.limit_changes();
    let changes = KeyChanges {
        name: req.name,
        allowed_models: req.allowed_models,
        limits,
        expires_at: req.expires_at,
        cache_enabled: req.cache_enabled,
    };
    // Limits are what an admin granted: members may only tighten them, within what an
    // admin allows their keys.
    if caller.role() != Role::Admin && changes.touches_limits() {
        let Principal::User(member) = &caller.principal else {
            return Err(ApiError::forbidden("only admins change a key's limits"));
        };
        key_policy::for_member(state.db(), member)
            .await?
            .check_change(
                key.allowed_models(),
                &key.limits(),
                changes.allowed_models.clone(),
                &changes.limits,
            )
            .map_err(beyond_policy)?;
    }
    let key = keys::update_key(state.db(), &id, changes, &caller.actor()).await?;
    state.changed(KeyChange::Key(id));
    Ok(Json(key.into()))
}

/// Revoke a key: it stops working at once.
#[utoipa::path(post, operation_id = "keys_revoke", path = "/api/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "The key's public id, `key_…`")),
    responses((status = 200, description = "OK", body = KeyView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<KeyView>> {
    let key = visible_key(&state, &caller, &id).await?;
    caller.require_writer_of(&key)?;
    let key = keys::revoke_key(state.db(), &id, &caller.actor()).await?;
    state.changed(KeyChange::Key(id));
    Ok(Json(key.into()))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working (default from the server's settings; 0 ends
    /// it at once; at most 30 days).
    pub grace_seconds: Option<i64>,
}

/// Give a key a new secret (in the response, shown once); the old one keeps working for the
/// grace period.
#[utoipa::path(post, operation_id = "keys_rotate", path = "/api/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "The key's public id, `key_…`")), request_body(content = Option<RotateKey>),
    responses((status = 200, description = "OK", body = IssuedKeyView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "The key is revoked", body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<IssuedKeyView>> {
    // The body is optional: an empty POST rotates with the default grace period.
    let req: RotateKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let key = visible_key(&state, &caller, &id).await?;
    caller.require_writer_of(&key)?;
    let grace = match req.grace_seconds {
        Some(s) => chrono::Duration::try_seconds(s)
            .ok_or_else(|| ApiError::invalid("grace_seconds", "must be between 0 and 30 days"))?,
        None => chrono::Duration::from_std(state.settings().rotation_grace)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let issued = keys::rotate_key(state.db(), state.secret(), &id, grace, &caller.actor()).await?;
    state.changed(KeyChange::Key(id));
    Ok(Json(issued.into()))
}
