//! The audit log, newest first (admins and viewers).

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use tollgate_core::store::entity::audit_log;
use utoipa::{IntoParams, ToSchema};

use crate::{
    AdminState,
    auth::Caller,
    error::{ApiResult, ErrorBody},
    extract::QueryParams,
    page::{self, Page},
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub page: Option<u64>,
    pub per_page: Option<u64>,
    /// e.g. `master-key` or `user:1:ada@example.com`.
    pub actor: Option<String>,
    /// e.g. `key.revoke`.
    pub action: Option<String>,
    /// `user`, `team`, `key` or `provider`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    /// Before/after values of what changed; never secrets.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    pub request_ip: Option<String>,
}

/// List audit entries with filters, newest first.
#[utoipa::path(get, operation_id = "audit_list", path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "OK", body = Page<AuditEntry>), (status = 403, description = "The caller's role does not allow this", body = ErrorBody)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    caller.require_reader()?;
    let (page, per_page) = page::resolve(q.page, q.per_page)?;
    use audit_log::Column as C;
    let mut query = audit_log::Entity::find().order_by_desc(C::Id);
    if let Some(v) = q.actor {
        query = query.filter(C::Actor.eq(v));
    }
    if let Some(v) = q.action {
        query = query.filter(C::Action.eq(v));
    }
    if let Some(v) = q.target_type {
        query = query.filter(C::TargetType.eq(v));
    }
    if let Some(v) = q.target_id {
        query = query.filter(C::TargetId.eq(v));
    }
    if let Some(v) = q.from {
        query = query.filter(C::OccurredAt.gte(v));
    }
    if let Some(v) = q.to {
        query = query.filter(C::OccurredAt.lt(v));
    }
    let paginator = query.paginate(state.db(), per_page);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
    Ok(Json(Page {
        data: items
            .into_iter()
            .map(|e| AuditEntry {
                summary: serde_json::from_str(&e.summary).unwrap_or(serde_json::Value::Null),
                id: e.id,
                occurred_at: e.occurred_at,
                actor: e.actor,
                action: e.action,
                target_type: e.target_type,
                target_id: e.target_id,
                request_ip: e.request_ip,
            })
            .collect(),
        page,
        per_page,
        total,
    }))
}
