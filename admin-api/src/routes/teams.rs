//! Teams and their members: admins manage them, viewers read them.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use tollgate_core::store::{
    keys::KeyChange,
    teams::{self, TeamChanges},
};
use utoipa::ToSchema;

use tollgate_core::limits::LimitChanges;

use super::views::{KeyPolicyPatch, TeamView, UserView};
use crate::{
    AdminState,
    auth::Caller,
    error::{ApiResult, ErrorBody},
    extract::{JsonBody, PathParam, QueryParams},
    page::{Page, PageQuery},
};

/// List teams (admins and viewers).
#[utoipa::path(get, operation_id = "teams_list", path = "/api/teams", tag = "teams", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<TeamView>), (status = 403, description = "The caller's role does not allow this", body = ErrorBody)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<TeamView>>> {
    caller.require_reader()?;
    let (page, per_page) = q.resolve()?;
    let (items, total) = teams::list_teams(state.db(), page, per_page).await?;
    Ok(Json(Page::of(items, page, per_page, total)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamRequest {
    pub name: String,
}

/// Create a team (admins).
#[utoipa::path(post, operation_id = "teams_create", path = "/api/teams", tag = "teams", request_body = TeamRequest,
    responses((status = 201, description = "Created", body = TeamView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 409, description = "Conflicts with existing data", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(req): JsonBody<TeamRequest>,
) -> ApiResult<(StatusCode, Json<TeamView>)> {
    caller.require_admin()?;
    let name = teams::check_name(&req.name)?;
    let created = teams::create_team(state.db(), name, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[derive(Serialize, ToSchema)]
pub struct TeamDetail {
    #[serde(flatten)]
    pub team: TeamView,
    pub members: Vec<UserView>,
}

/// Get a team with its members (admins and viewers).
#[utoipa::path(get, operation_id = "teams_get", path = "/api/teams/{id}", tag = "teams",
    params(("id" = i64, Path, description = "Team id")),
    responses((status = 200, description = "OK", body = TeamDetail), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<TeamDetail>> {
    caller.require_reader()?;
    let team = teams::get_team(state.db(), id).await?;
    let members = teams::members(state.db(), id).await?;
    Ok(Json(TeamDetail {
        team: team.into(),
        members: members.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    pub name: Option<String>,
    /// Quota limits shared by all the team's keys.
    pub limits: Option<LimitChanges>,
    /// What the keys its members create for themselves may have at most.
    pub key_policy: Option<KeyPolicyPatch>,
}

/// Rename a team or change its limits (admins).
#[utoipa::path(patch, operation_id = "teams_update", path = "/api/teams/{id}", tag = "teams",
    params(("id" = i64, Path, description = "Team id")), request_body = UpdateTeam,
    responses((status = 200, description = "OK", body = TeamView), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "Conflicts with existing data", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
    JsonBody(req): JsonBody<UpdateTeam>,
) -> ApiResult<Json<TeamView>> {
    caller.require_admin()?;
    let changes = TeamChanges {
        name: req.name.as_deref().map(teams::check_name).transpose()?,
        limits: req.limits.unwrap_or_default(),
        key_policy: req.key_policy.map(Into::into).unwrap_or_default(),
    };
    let after = teams::update_team(state.db(), id, changes, &caller.actor()).await?;
    state.changed(KeyChange::Team(id));
    Ok(Json(after.into()))
}

/// Delete a team; its keys go with it (admins).
#[utoipa::path(delete, operation_id = "teams_delete", path = "/api/teams/{id}", tag = "teams",
    params(("id" = i64, Path, description = "Team id")),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    teams::delete_team(state.db(), id, &caller.actor()).await?;
    state.changed(KeyChange::Team(id));
    Ok(StatusCode::NO_CONTENT)
}

/// Add a user to a team (admins). Adding a member twice is not an error.
#[utoipa::path(put, operation_id = "teams_add_member", path = "/api/teams/{id}/members/{user_id}", tag = "teams",
    params(("id" = i64, Path, description = "Team id"), ("user_id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam((id, user_id)): PathParam<(i64, i64)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    teams::add_member(state.db(), id, user_id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user from a team (admins).
#[utoipa::path(delete, operation_id = "teams_remove_member", path = "/api/teams/{id}/members/{user_id}", tag = "teams",
    params(("id" = i64, Path, description = "Team id"), ("user_id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Done; no content"), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AdminState>,
    caller: Caller,
    PathParam((id, user_id)): PathParam<(i64, i64)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    teams::remove_member(state.db(), id, user_id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
