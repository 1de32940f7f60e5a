//! Provider credentials: admins manage them, viewers see them masked. The plaintext goes
//! in once and never comes back out of this API.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use tollgate_core::limits::double_option;
use tollgate_core::store::keys::KeyChange;
use tollgate_core::store::providers::{self, CredentialChanges, NewCredential};
use utoipa::ToSchema;

use super::views::ProviderView;
use crate::{
    AdminState,
    auth::Caller,
    error::{ApiResult, ErrorBody},
    extract::{JsonBody, PathParam},
};

/// List provider credentials, secrets masked (admins and viewers).
#[utoipa::path(get, operation_id = "providers_list", path = "/api/providers", tag = "providers",
    responses((status = 200, description = "OK", body = Vec<ProviderView>), (status = 403, description = "The caller's role does not allow this", body = ErrorBody)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ProviderView>>> {
    caller.require_reader()?;
    let all = providers::list_credentials(state.db()).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Letters, digits, `-`, `_`, `.`; unique.
    pub name: String,
    /// `openai`, `openai-compatible`, `azure-openai` or `anthropic`.
    pub kind: String,
    pub base_url: Option<String>,
    /// The provider's API key; stored encrypted, shown afterwards as its last 4 characters.
    pub api_key: String,
}

/// Store a provider credential (admins).
#[utoipa::path(post, operation_id = "providers_create", path = "/api/providers", tag = "providers", request_body = CreateProvider,
    responses((status = 201, description = "Created", body = ProviderView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 409, description = "Conflicts with existing data", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateProvider>,
) -> ApiResult<(StatusCode, Json<ProviderView>)> {
    caller.require_admin()?;
    let new = NewCredential {
        name: req.name,
        kind: req.kind,
        base_url: req.base_url,
        secret: req.api_key,
    };
    let created =
        providers::create_credential(state.db(), state.secret(), new, &caller.actor()).await?;
    state.changed(KeyChange::Credentials);
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Get a provider credential, secret masked (admins and viewers).
#[utoipa::path(get, operation_id = "providers_get", path = "/api/providers/{id}", tag = "providers",
    params(("id" = i64, Path, description = "Provider credential id")),
    responses((status = 200, description = "OK", body = ProviderView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<ProviderView>> {
    caller.require_reader()?;
    Ok(Json(
        providers::get_credential(state.db(), id).await?.into(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    pub name: Option<String>,
    pub kind: Option<String>,
    /// `null` removes it; omit to keep.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub base_url: Option<Option<String>>,
    /// A new API key; omit to keep the stored one.
    pub api_key: Option<String>,
}

/// Change a provider credential (admins).
#[utoipa::path(patch, operation_id = "providers_update", path = "/api/providers/{id}", tag = "providers",
    params(("id" = i64, Path, description = "Provider credential id")), request_body = UpdateProvider,
    responses((status = 200, description = "OK", body = ProviderView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "Conflicts with existing data", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
    JsonBody(req): JsonBody<UpdateProvider>,
) -> ApiResult<Json<ProviderView>> {
    caller.require_admin()?;
    let changes = CredentialChanges {
        name: req.name,
        kind: req.kind,
        base_url: req.base_url,
        secret: req.api_key,
    };
    let after =
        providers::update_credential(state.db(), state.secret(), id, changes, &caller.actor())
            .await?;
    state.changed(KeyChange::Credentials);
    Ok(Json(after.into()))
}

/// Delete a provider credential (admins).
#[utoipa::path(delete, operation_id = "providers_delete", path = "/api/providers/{id}", tag = "providers",
    params(("id" = i64, Path, description = "Provider credential id")),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    providers::delete_credential(state.db(), id, &caller.actor()).await?;
    state.changed(KeyChange::Credentials);
    Ok(StatusCode::NO_CONTENT)
}
