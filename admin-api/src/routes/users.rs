//! Users: admins manage everyone; viewers read; members see and may re-password only
//! themselves.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use tollgate_core::store::{
    keys::KeyChange,
    users::{self, NewUser, UserChanges, UserFilter},
};
use utoipa::{IntoParams, ToSchema};

use tollgate_core::limits::LimitChanges;

use super::views::{KeyPolicyPatch, RoleName, UserView};
use crate::{
    AdminState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParam, QueryParams},
    page::{self, Page},
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    pub page: Option<u64>,
    pub per_page: Option<u64>,
    pub role: Option<RoleName>,
    pub disabled: Option<bool>,
    /// Part of the email, case-insensitive.
    pub email: Option<String>,
}

/// List users (admins and viewers).
#[utoipa::path(get, operation_id = "users_list", path = "/api/users", tag = "users", params(UserQuery),
    responses((status = 200, description = "OK", body = Page<UserView>), (status = 403, description = "The caller's role does not allow this", body = ErrorBody)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<UserQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    caller.require_reader()?;
    let (page, per_page) = page::resolve(q.page, q.per_page)?;
    let filter = UserFilter {
        role: q.role.map(Into::into),
        disabled: q.disabled,
        email: q.email,
    };
    let (items, total) = users::list_users(state.db(), &filter, page, per_page).await?;
    Ok(Json(Page::of(items, page, per_page, total)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// At least 12 characters.
    pub password: String,
    pub role: RoleName,
}

async fn hash(state: &AdminState, password: String) -> ApiResult<String> {
    state
        .hasher()
        .run(move || users::hash_new_password(&password))
        .await?
        .map_err(Into::into)
}

/// Create a user (admins).
#[utoipa::path(post, operation_id = "users_create", path = "/api/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 422, description = "A field failed validation", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.require_admin()?;
    users::normalize_email(&req.email)?;
    let password_hash = hash(&state, req.password).await?;
    let user = users::create_user(
        state.db(),
        NewUser {
            email: &req.email,
            password_hash,
            role: req.role.into(),
        },
        &caller.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// A stolen session must not be enough to take over the account: changing one's own
/// password needs the current one.
async fn check_current_password(
    state: &AdminState,
    id: i64,
    current: Option<String>,
) -> ApiResult<()> {
    let Some(current) = current else {
        return Err(ApiError::invalid(
            "current_password",
            "is required to change your own password",
        ));
    };
    let stored = users::get_user(state.db(), id).await?.password_hash;
    let matches = state
        .hasher()
        .run(move || tollgate_core::secrets::verify_password(&current, &stored).unwrap_or(false))
        .await?;
    if matches {
        Ok(())
    } else {
        Err(ApiError::invalid("current_password", "does not match"))
    }
}

fn require_self_or_reader(caller: &Caller, id: i64) -> ApiResult<()> {
    if caller.user_id() == Some(id) {
        Ok(())
    } else {
        caller.require_reader()
    }
}

/// Get a user (admins and viewers; members themselves).
#[utoipa::path(get, operation_id = "users_get", path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "OK", body = UserView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<UserView>> {
    require_self_or_reader(&caller, id)?;
    Ok(Json(users::get_user(state.db(), id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<RoleName>,
    pub disabled: Option<bool>,
    /// A new password, at least 12 characters.
    pub password: Option<String>,
    /// The current password: required to change one's own.
    pub current_password: Option<String>,
    /// Quota limits shared by all the user's keys (admins).
    pub limits: Option<LimitChanges>,
    /// What the keys the user creates may have at most (admins).
    pub key_policy: Option<KeyPolicyPatch>,
}

/// Change a user's role, disabled flag, password or limits (admins; members their own
/// password).
#[utoipa::path(patch, operation_id = "users_update", path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")), request_body = UpdateUser,
    responses(
        (status = 200, description = "OK", body = UserView),
        (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "It would leave no active admin", body = ErrorBody),
        (status = 422, description = "A field failed validation", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let own_password_only = caller.user_id() == Some(id)
        && req.role.is_none()
        && req.disabled.is_none()
        && req.limits.is_none()
        && req.key_policy.is_none()
        && req.password.is_some();
    if !(own_password_only && caller.role() == tollgate_core::store::entity::user::Role::Member) {
        caller.require_admin()?;
    }
    if req.password.is_some() && caller.user_id() == Some(id) {
        check_current_password(&state, id, req.current_password.clone()).await?;
    }
    let password_hash = match req.password {
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let changes = UserChanges {
        role: req.role.map(Into::into),
        disabled: req.disabled,
        password_hash,
        limits: req.limits.unwrap_or_default(),
        key_policy: req.key_policy.map(Into::into).unwrap_or_default(),
    };
    let user = users::update_user(state.db(), id, changes, &caller.actor()).await?;
    state.changed(KeyChange::User(id));
    Ok(Json(user.into()))
}

/// Delete a user and their keys (admins).
#[utoipa::path(delete, operation_id = "users_delete", path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Done; no content"),
        (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "It is the last active admin", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    users::delete_user(state.db(), id, &caller.actor()).await?;
    state.changed(KeyChange::User(id));
    Ok(StatusCode::NO_CONTENT)
}
