//! Usage reports over a time range: totals per key, user, team or model, the same as a time
//! series by hour or day, and that series as CSV. Members see only their own usage.

use std::collections::HashMap;

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement},
};
use serde::{Deserialize, Serialize};
use tollgate_core::store::entity::{api_key, team, usage_event, user, user::Role};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AdminState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::QueryParams,
};

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Key,
    User,
    Team,
    #[default]
    Model,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    #[default]
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start of the range, RFC 3339, inclusive (default: 30 days before `to`).
    pub from: Option<DateTime<Utc>>,
    /// End of the range, RFC 3339, exclusive (default: now).
    pub to: Option<DateTime<Utc>>,
    /// `key`, `user`, `team` or `model` (default).
    pub group_by: Option<GroupBy>,
    /// For series: `hour` or `day` (default), in UTC.
    pub bucket: Option<Bucket>,
    /// Only this user's requests (members: always their own).
    pub user_id: Option<i64>,
    /// Only this team's requests.
    pub team_id: Option<i64>,
    /// Only this key's requests (its public id).
    pub key_id: Option<String>,
    /// Only this model's requests.
    pub model: Option<String>,
}

/// Requests, tokens and cost of one group (or bucket and group).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Figures {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Integer micro-USD (1 USD = 1,000,000).
    pub cost_micro_usd: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupRow {
    /// The key's public id, the user or team id, or the model name; `null` for requests
    /// without one (e.g. the master key).
    pub group: Option<String>,
    /// A readable name: the key's name, the user's email, the team's name or the model.
    pub label: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    pub totals: Figures,
    pub groups: Vec<GroupRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// Start of the bucket, RFC 3339 UTC.
    pub bucket: String,
    pub group: Option<String>,
    pub label: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSeries {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    pub bucket: Bucket,
    pub points: Vec<SeriesPoint>,
}

/// The checked range and filters of a query.
pub(crate) struct Scope {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
    bucket: Bucket,
    user_id: Option<i64>,
    team_id: Option<i64>,
    key_row: Option<i64>,
    model: Option<String>,
}

impl Scope {
    /// The events in range that pass the filters.
    pub(crate) fn condition(&self) -> Condition {
        use usage_event::Column as C;
        let mut c = Condition::all()
            .add(C::OccurredAt.gte(self.from))
            .add(C::OccurredAt.lt(self.to));
        if let Some(id) = self.user_id {
            c = c.add(C::UserId.eq(id));
        }
        if let Some(id) = self.team_id {
            c = c.add(C::TeamId.eq(id));
        }
        if let Some(id) = self.key_row {
            c = c.add(C::KeyId.eq(id));
        }
        if let Some(model) = &self.model {
            c = c.add(C::Model.eq(model.as_str()));
        }
        c
    }

    pub(crate) fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.from, self.to)
    }
}

pub(crate) async fn scope(state: &AdminState, caller: &Caller, q: UsageQuery) -> ApiResult<Scope> {
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    let bucket = q.bucket.unwrap_or_default();
    if bucket == Bucket::Hour && to - from > Duration::days(31) {
        return Err(ApiError::invalid(
            "bucket",
            "hourly series cover at most 31 days; use `day`",
        ));
    }
    let mut user_id = q.user_id;
    if caller.role() == Role::Member {
        if q.user_id.is_some_and(|id| Some(id) != caller.user_id()) {
            return Err(ApiError::forbidden("members see only their own usage"));
        }
        user_id = caller.user_id();
    }
    let key_row = match &q.key_id {
        Some(public_id) => Some(
            api_key::Entity::find()
                .filter(api_key::Column::PublicId.eq(public_id.as_str()))
                .one(state.db())
                .await?
                .map_or(-1, |k| k.id),
        ),
        None => None,
    };
    Ok(Scope {
        from,
        to,
        group_by: q.group_by.unwrap_or_default(),
        bucket,
        user_id,
        team_id: q.team_id,
        key_row,
        model: q.model,
    })
}

/// The UTC midnights bounding the whole days of the range, when there are any and the
/// query can read them from the daily rollup (not an hourly series).
fn whole_days(scope: &Scope, series: bool) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if series && scope.bucket == Bucket::Hour {
        return None;
    }
    let midnight = |t: DateTime<Utc>| {
        t.date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(t)
    };
    let floor = midnight(scope.from);
    let first = if floor == scope.from {
        floor
    } else {
        floor + Duration::days(1)
    };
    let last = midnight(scope.to);
    (first < last).then_some((first, last))
}

/// `SELECT grp, [bucket,] requests, tokens, cost … GROUP BY …` over the scope: raw events
/// for the partial days at the range's ends, the daily rollup (`usage_daily`) for the whole
/// days between, summed together. A 30-day report thus reads 30 rollup days, not every
/// event.
fn aggregate(scope: &Scope, backend: DatabaseBackend, series: bool) -> SelectStatement {
    let days = whole_days(scope, series);
    let mut parts = events_part(scope, backend, series, days);
    if let Some((first, last)) = days {
        parts.union(
            sea_orm::sea_query::UnionType::All,
            rollup_part(scope, series, first, last),
        );
    }
    let sum = |column: &str| Expr::cust(format!("CAST(SUM({column}) AS BIGINT)"));
    let mut q = Query::select();
    q.from_subquery(parts, Alias::new("parts"))
        .column(Alias::new("grp"))
        .expr_as(sum("requests"), Alias::new("requests"))
        .expr_as(sum("prompt_tokens"), Alias::new("prompt_tokens"))
        .expr_as(sum("completion_tokens"), Alias::new("completion_tokens"))
        .expr_as(sum("cost_micro_usd"), Alias::new("cost_micro_usd"));
    if series {
        q.column(Alias::new("bucket"))
            .add_group_by([Expr::cust("bucket"), Expr::cust("grp")])
            .order_by(Alias::new("bucket"), Order::Asc);
    } else {
        q.add_group_by([Expr::cust("grp")]);
    }
    q.order_by(Alias::new("grp"), Order::Asc);
    q
}

/// The raw events of the range, outside the whole days the rollup answers for.
fn events_part(
    scope: &Scope,
    backend: DatabaseBackend,
    series: bool,
    days: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> SelectStatement {
    use usage_event::Column as C;
    let group = match scope.group_by {
        GroupBy::Key => "CAST(key_id AS TEXT)",
        GroupBy::User => "CAST(user_id AS TEXT)",
        GroupBy::Team => "CAST(team_id AS TEXT)",
        GroupBy::Model => "model",
    };
    let mut condition = scope.condition();
    if let Some((first, last)) = days {
        condition = condition.add(
            Condition::any()
                .add(C::OccurredAt.lt(first))
                .add(C::OccurredAt.gte(last)),
        );
    }
    let mut q = Query::select();
    q.from(usage_event::Entity)
        .expr_as(Expr::cust(group), Alias::new("grp"))
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("requests"))
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT)"),
            Alias::new("prompt_tokens"),
        )
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT)"),
            Alias::new("completion_tokens"),
        )
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT)"),
            Alias::new("cost_micro_usd"),
        )
        .cond_where(condition);
    if series {
        let bucket = match (backend, scope.bucket) {
            (DatabaseBackend::Postgres, Bucket::Day) => {
                r#"to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T00:00:00Z"')"#
            }
            (DatabaseBackend::Postgres, Bucket::Hour) => {
                r#"to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24":00:00Z"')"#
            }
            (_, Bucket::Day) => "strftime('%Y-%m-%dT00:00:00Z', occurred_at)",
            (_, Bucket::Hour) => "strftime('%Y-%m-%dT%H:00:00Z', occurred_at)",
        };
        q.expr_as(Expr::cust(bucket), Alias::new("bucket"))
            .add_group_by([Expr::cust("bucket"), Expr::cust("grp")]);
    } else {
        q.add_group_by([Expr::cust("grp")]);
    }
    q
}

/// The daily rollup's rows for the whole days `[first, last)` that pass the filters; its
/// ids are 0 where an event had none.
fn rollup_part(
    scope: &Scope,
    series: bool,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> SelectStatement {
    let group = match scope.group_by {
        GroupBy::Key => "CAST(NULLIF(key_id, 0) AS TEXT)",
        GroupBy::User => "CAST(NULLIF(user_id, 0) AS TEXT)",
        GroupBy::Team => "CAST(NULLIF(team_id, 0) AS TEXT)",
        GroupBy::Model => "model",
    };
    let column = |name: &str| Expr::col(Alias::new(name));
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let mut condition = Condition::all()
        .add(column("day").gte(day(first)))
        .add(column("day").lt(day(last)));
    if let Some(id) = scope.user_id {
        condition = condition.add(column("user_id").eq(id));
    }
    if let Some(id) = scope.team_id {
        condition = condition.add(column("team_id").eq(id));
    }
    if let Some(id) = scope.key_row {
        condition = condition.add(column("key_id").eq(id));
    }
    if let Some(model) = &scope.model {
        condition = condition.add(column("model").eq(model.as_str()));
    }
    let sum = |column: &str| Expr::cust(format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)"));
    let mut q = Query::select();
    q.from(Alias::new("usage_daily"))
        .expr_as(Expr::cust(group), Alias::new("grp"))
        .expr_as(sum("requests"), Alias::new("requests"))
        .expr_as(sum("prompt_tokens"), Alias::new("prompt_tokens"))
        .expr_as(sum("completion_tokens"), Alias::new("completion_tokens"))
        .expr_as(sum("cost_micro_usd"), Alias::new("cost_micro_usd"))
        .cond_where(condition);
    if series {
        q.expr_as(Expr::cust("day || 'T00:00:00Z'"), Alias::new("bucket"))
            .add_group_by([Expr::cust("bucket"), Expr::cust("grp")]);
    } else {
        q.add_group_by([Expr::cust("grp")]);
    }
    q
}

struct Row {
    bucket: Option<String>,
    group: Option<String>,
    figures: Figures,
}

async fn run(state: &AdminState, scope: &Scope, series: bool) -> ApiResult<Vec<Row>> {
    let db = state.db();
    let backend = db.get_database_backend();
    let stmt = aggregate(scope, backend, series);
    let rows = db.query_all(&stmt).await?;
    rows.into_iter()
        .map(|r| {
            Ok(Row {
                bucket: if series {
                    r.try_get("", "bucket")?
                } else {
                    None
                },
                group: r.try_get("", "grp")?,
                figures: Figures {
                    requests: r.try_get("", "requests")?,
                    prompt_tokens: r.try_get("", "prompt_tokens")?,
                    completion_tokens: r.try_get("", "completion_tokens")?,
                    cost_micro_usd: r.try_get("", "cost_micro_usd")?,
                },
            })
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .map_err(Into::into)
}

/// Turns the stored ids of groups into public ids and readable labels.
async fn labels(
    state: &AdminState,
    group_by: GroupBy,
    groups: &[Option<String>],
) -> ApiResult<HashMap<String, (String, String)>> {
    let ids: Vec<i64> = groups
        .iter()
        .flatten()
        .filter_map(|g| g.parse().ok())
        .collect();
    let db = state.db();
    let pairs: Vec<(i64, String, String)> = match group_by {
        GroupBy::Model => {
            return Ok(groups
                .iter()
                .flatten()
                .map(|m| (m.clone(), (m.clone(), m.clone())))
                .collect());
        }
        GroupBy::Key => api_key::Entity::find()
            .filter(api_key::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|k| (k.id, k.public_id, k.name))
            .collect(),
        GroupBy::User => user::Entity::find()
            .filter(user::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id, u.id.to_string(), u.email))
            .collect(),
        GroupBy::Team => team::Entity::find()
            .filter(team::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.id.to_string(), t.name))
            .collect(),
    };
    Ok(pairs
        .into_iter()
        .map(|(id, public, label)| (id.to_string(), (public, label)))
        .collect())
}

fn named(
    names: &HashMap<String, (String, String)>,
    group: Option<String>,
) -> (Option<String>, Option<String>) {
    match group {
        Some(g) => match names.get(&g) {
            Some((public, label)) => (Some(public.clone()), Some(label.clone())),
            // A key or user deleted since: keep the stored id.
            None => (Some(g), None),
        },
        None => (None, None),
    }
}

/// Totals per key, user, team or model over a time range.
#[utoipa::path(get, operation_id = "usage_totals", path = "/api/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "OK", body = UsageTotals), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn totals(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<UsageQuery>,
) -> ApiResult<Json<UsageTotals>> {
    let scope = scope(&state, &caller, q).await?;
    let rows = run(&state, &scope, false).await?;
    let groups: Vec<Option<String>> = rows.iter().map(|r| r.group.clone()).collect();
    let names = labels(&state, scope.group_by, &groups).await?;
    let mut totals = Figures::default();
    let groups = rows
        .into_iter()
        .map(|r| {
            totals.requests += r.figures.requests;
            totals.prompt_tokens += r.figures.prompt_tokens;
            totals.completion_tokens += r.figures.completion_tokens;
            totals.cost_micro_usd += r.figures.cost_micro_usd;
            let (group, label) = named(&names, r.group);
            GroupRow {
                group,
                label,
                figures: r.figures,
            }
        })
        .collect();
    Ok(Json(UsageTotals {
        from: scope.from,
        to: scope.to,
        group_by: scope.group_by,
        totals,
        groups,
    }))
}

async fn series_of(state: &AdminState, caller: &Caller, q: UsageQuery) -> ApiResult<UsageSeries> {
    let scope = scope(state, caller, q).await?;
    let rows = run(state, &scope, true).await?;
    let groups: Vec<Option<String>> = rows.iter().map(|r| r.group.clone()).collect();
    let names = labels(state, scope.group_by, &groups).await?;
    let points = rows
        .into_iter()
        .map(|r| {
            let (group, label) = named(&names, r.group);
            SeriesPoint {
                bucket: r.bucket.unwrap_or_default(),
                group,
                label,
                figures: r.figures,
            }
        })
        .collect();
    Ok(UsageSeries {
        from: scope.from,
        to: scope.to,
        group_by: scope.group_by,
        bucket: scope.bucket,
        points,
    })
}

/// A time series by hour or day (UTC) per key, user, team or model.
#[utoipa::path(get, operation_id = "usage_series", path = "/api/usage/series", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "OK", body = UsageSeries), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn series(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<UsageQuery>,
) -> ApiResult<Json<UsageSeries>> {
    Ok(Json(series_of(&state, &caller, q).await?))
}

/// The time series as CSV: `bucket,group,label,requests,prompt_tokens,completion_tokens,cost_micro_usd`.
#[utoipa::path(get, operation_id = "usage_export", path = "/api/usage/export", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "OK", content_type = "text/csv", body = String), (status = 403, description = "The caller's role does not allow this", body = ErrorBody), (status = 422, description = "A field failed validation", body = ErrorBody)))]
pub async fn export(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<UsageQuery>,
) -> ApiResult<Response> {
    let series = series_of(&state, &caller, q).await?;
    let mut csv = String::from(
        "bucket,group,label,requests,prompt_tokens,completion_tokens,cost_micro_usd\n",
    );
    for p in &series.points {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&p.bucket),
            csv_field(p.group.as_deref().unwrap_or("")),
            csv_field(p.label.as_deref().unwrap_or("")),
            p.figures.requests,
            p.figures.prompt_tokens,
            p.figures.completion_tokens,
            p.figures.cost_micro_usd
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tollgate-usage.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// Quotes a CSV field when needed, and defuses text a spreadsheet would run as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
