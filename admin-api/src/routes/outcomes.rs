//! How requests ended over a time range: counts by HTTP status and by the gateway's error
//! code (which quota dimension refused, a revoked key, an upstream timeout, …), and the most
//! recent refused or failed requests with the message the client got. Members see only
//! their own.

use std::collections::HashMap;

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Alias, Expr, Query},
};
use serde::{Deserialize, Serialize};
use tollgate_core::store::entity::{api_key, usage_event};
use utoipa::{IntoParams, ToSchema};

use super::usage::{UsageQuery, scope};
use crate::{
    AdminState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::QueryParams,
};

const MAX_RECENT: u64 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutcomeQuery {
    /// Start of the range, RFC 3339, inclusive (default: 30 days before `to`).
    pub from: Option<DateTime<Utc>>,
    /// End of the range, RFC 3339, exclusive (default: now).
    pub to: Option<DateTime<Utc>>,
    /// Only this user's requests (members: always their own).
    pub user_id: Option<i64>,
    /// Only this team's requests.
    pub team_id: Option<i64>,
    /// Only this key's requests (its public id).
    pub key_id: Option<String>,
    /// Only this model's requests.
    pub model: Option<String>,
    /// How many recent refused or failed requests to list (default 20, at most 200).
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCount {
    /// The HTTP status the client got; 0 when the client left before an answer.
    pub status: i32,
    pub requests: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeCount {
    /// The error `code` the gateway answered with, e.g. `rate_limit_requests`.
    pub code: String,
    pub requests: i64,
}

/// A request the gateway refused or that failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedRequest {
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    /// The key's public id, when a key made the request.
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub model: String,
    pub status: i32,
    /// The gateway's error code; `null` when the upstream's own error was passed on.
    pub code: Option<String>,
    /// The message the client got from the gateway.
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Outcomes {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Every request in range, served or not.
    pub requests: i64,
    /// Requests answered with a status of 400 or more.
    pub errors: i64,
    /// Requests per status, ascending.
    pub by_status: Vec<StatusCount>,
    /// Requests per gateway error code, most frequent first.
    pub by_code: Vec<CodeCount>,
    /// The latest requests answered with 400 or more, newest first.
    pub recent: Vec<FailedRequest>,
}

/// How requests ended: counts by status and by error code, and the latest refusals.
#[utoipa::path(get, operation_id = "usage_outcomes", path = "/api/usage/outcomes", tag = "usage", params(OutcomeQuery),
    responses((status = 200, description = "OK", body = Outcomes), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn outcomes(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<OutcomeQuery>,
) -> ApiResult<Json<Outcomes>> {
    let limit = q.limit.unwrap_or(20);
    if limit > MAX_RECENT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be at most {MAX_RECENT}"),
        ));
    }
    let scope = scope(
        &state,
        &caller,
        UsageQuery {
            from: q.from,
            to: q.to,
            group_by: None,
            bucket: None,
            user_id: q.user_id,
            team_id: q.team_id,
            key_id: q.key_id,
            model: q.model,
        },
    )
    .await?;
    let db = state.db();
    let counted = |column: &'static str| {
        let mut query = Query::select();
        query
            .from(usage_event::Entity)
            .expr_as(Expr::cust(column), Alias::new("grp"))
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("requests"))
            .cond_where(scope.condition())
            .add_group_by([Expr::cust(column)]);
        query
    };
    let mut by_status = Vec::new();
    for row in db.query_all(&counted("status")).await? {
        by_status.push(StatusCount {
            status: row.try_get("", "grp")?,
            requests: row.try_get("", "requests")?,
        });
    }
    by_status.sort_by_key(|s| s.status);
    let mut by_code = Vec::new();
    let mut codes = counted("error_code");
    codes.and_where(usage_event::Column::ErrorCode.is_not_null());
    for row in db.query_all(&codes).await? {
        by_code.push(CodeCount {
            code: row.try_get("", "grp")?,
            requests: row.try_get("", "requests")?,
        });
    }
    by_code.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.code.cmp(&b.code)));
    let events = usage_event::Entity::find()
        .filter(scope.condition())
        .filter(usage_event::Column::Status.gte(400))
        .order_by_desc(usage_event::Column::OccurredAt)
        .order_by_desc(usage_event::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let keys: HashMap<i64, (String, String)> = api_key::Entity::find()
        .filter(api_key::Column::Id.is_in(events.iter().filter_map(|e| e.key_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|k| (k.id, (k.public_id, k.name)))
        .collect();
    let recent = events
        .into_iter()
        .map(|e| {
            let key = e.key_id.and_then(|id| keys.get(&id));
            FailedRequest {
                occurred_at: e.occurred_at,
                request_id: e.request_id,
                key_id: key.map(|(public, _)| public.clone()),
                key_name: key.map(|(_, name)| name.clone()),
                model: e.model,
                status: e.status,
                code: e.error_code,
                message: e.error_message,
            }
        })
        .collect();
    let requests = by_status.iter().map(|s| s.requests).sum();
    let errors = by_status
        .iter()
        .filter(|s| s.status >= 400)
        .map(|s| s.requests)
        .sum();
    let (from, to) = scope.range();
    Ok(Json(Outcomes {
        from,
        to,
        requests,
        errors,
        by_status,
        by_code,
        recent,
    }))
}
