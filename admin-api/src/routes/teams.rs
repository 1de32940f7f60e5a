//! Teams and their members: admins manage them, viewers read them.

use axum::{Json, extract::State, http::StatusCode};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_core::store::{
    StoreError, audit,
    entity::{team, team_member, user},
    keys::KeyChange,
    limits::LimitChanges,
    users,
};
use utoipa::ToSchema;

use super::views::{LimitsPatch, TeamView, UserView};
use crate::{
    AdminState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParam, QueryParams},
    page::{Page, PageQuery},
};

fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::invalid("name", "must be 1 to 128 characters"));
    }
    Ok(name.to_string())
}

fn duplicate(name: &str) -> impl Fn(sea_orm::DbErr) -> ApiError + '_ {
    move |e| {
        StoreError::from_insert(e, "name", format!("a team named {name} already exists")).into()
    }
}

async fn find(db: &impl sea_orm::ConnectionTrait, id: i64) -> ApiResult<team::Model> {
    team::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("team {id}")))
}

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
    let paginator = team::Entity::find()
        .order_by_asc(team::Column::Id)
        .paginate(state.db(), per_page);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
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
    let name = check_name(&req.name)?;
    let now = Utc::now();
    let txn = state.db().begin().await?;
    let created = team::ActiveModel {
        name: Set(name.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(duplicate(&name))?;
    audit::record(
        &txn,
        &caller.actor(),
        "team.create",
        "team",
        created.id,
        json!({ "after": { "name": created.name } }),
    )
    .await?;
    txn.commit().await?;
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
    let team = find(state.db(), id).await?;
    let member_ids: Vec<i64> = team_member::Entity::find()
        .filter(team_member::Column::TeamId.eq(id))
        .all(state.db())
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let members = user::Entity::find()
        .filter(user::Column::Id.is_in(member_ids))
        .order_by_asc(user::Column::Id)
        .all(state.db())
        .await?;
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
    pub limits: Option<LimitsPatch>,
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
    let name = req.name.as_deref().map(check_name).transpose()?;
    let txn = state.db().begin().await?;
    let before = find(&txn, id).await?;
    let changes: LimitChanges = req.limits.map(Into::into).unwrap_or_default();
    let limits = before.limits().apply(&changes);
    limits.check()?;
    let mut active = before.clone().into_active_model();
    if let Some(name) = &name {
        active.name = Set(name.clone());
    }
    active.rpm_limit = Set(limits.rpm_limit);
    active.tpm_limit = Set(limits.tpm_limit);
    active.concurrency_limit = Set(limits.concurrency_limit);
    active.budget_micro_usd = Set(limits.budget_micro_usd);
    active.budget_period = Set(limits.budget_period);
    active.updated_at = Set(Utc::now());
    let after = active
        .update(&txn)
        .await
        .map_err(duplicate(name.as_deref().unwrap_or_default()))?;
    audit::record(
        &txn,
        &caller.actor(),
        "team.update",
        "team",
        id,
        json!({
            "before": { "name": before.name, "limits": before.limits().summary() },
            "after": { "name": after.name, "limits": after.limits().summary() },
        }),
    )
    .await?;
    txn.commit().await?;
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
    let txn = state.db().begin().await?;
    let before = find(&txn, id).await?;
    team_member::Entity::delete_many()
        .filter(team_member::Column::TeamId.eq(id))
        .exec(&txn)
        .await?;
    tollgate_core::store::entity::api_key::Entity::delete_many()
        .filter(tollgate_core::store::entity::api_key::Column::TeamId.eq(id))
        .exec(&txn)
        .await?;
    team::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        &caller.actor(),
        "team.delete",
        "team",
        id,
        json!({ "before": { "name": before.name } }),
    )
    .await?;
    txn.commit().await?;
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
    let txn = state.db().begin().await?;
    find(&txn, id).await?;
    users::get_user(&txn, user_id).await?;
    let exists = team_member::Entity::find_by_id((id, user_id))
        .one(&txn)
        .await?
        .is_some();
    if !exists {
        team_member::ActiveModel {
            team_id: Set(id),
            user_id: Set(user_id),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            &caller.actor(),
            "team.member.add",
            "team",
            id,
            json!({ "after": { "user_id": user_id } }),
        )
        .await?;
    }
    txn.commit().await?;
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
    let txn = state.db().begin().await?;
    find(&txn, id).await?;
    let removed = team_member::Entity::delete_by_id((id, user_id))
        .exec(&txn)
        .await?;
    if removed.rows_affected == 0 {
        return Err(ApiError::NotFound(format!("user {user_id} in team {id}")));
    }
    audit::record(
        &txn,
        &caller.actor(),
        "team.member.remove",
        "team",
        id,
        json!({ "before": { "user_id": user_id } }),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
