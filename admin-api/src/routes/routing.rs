//! The routes this gateway serves, from its configuration: models, their deployments and
//! weights, and each provider's health over the last minutes as seen in the usage events.
//! Never a provider's key.

use std::{collections::HashMap, sync::Arc};

use axum::{Json, extract::State};
use chrono::{Duration, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait,
    sea_query::{Alias, Expr, Query},
};
use serde::Serialize;
use tollgate_core::store::entity::{usage_event, user::Role};
use utoipa::ToSchema;

use crate::{
    AdminState,
    auth::Caller,
    error::{ApiResult, ErrorBody},
};

/// How far back a provider's health looks.
const HEALTH_WINDOW_MINUTES: i64 = 15;

/// Where the routes come from: the running gateway's table (live health), or a fixed list.
#[derive(Clone)]
pub struct RouteSource(Arc<dyn Fn() -> Vec<ModelRoute> + Send + Sync>);

impl RouteSource {
    pub fn new(read: impl Fn() -> Vec<ModelRoute> + Send + Sync + 'static) -> Self {
        RouteSource(Arc::new(read))
    }

    pub fn fixed(routes: Vec<ModelRoute>) -> Self {
        RouteSource::new(move || routes.clone())
    }

    pub fn read(&self) -> Vec<ModelRoute> {
        (self.0)()
    }
}

impl Default for RouteSource {
    fn default() -> Self {
        RouteSource::fixed(Vec::new())
    }
}

impl std::fmt::Debug for RouteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteSource")
    }
}

/// A model clients may ask for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelRoute {
    pub name: String,
    pub aliases: Vec<String>,
    /// `weighted`, `least-inflight` or `latency`.
    pub strategy: String,
    /// Further attempts after the first when one fails before answering.
    pub retries: u32,
    /// Models that take the request, in order, when every deployment of this one failed.
    pub fallbacks: Vec<String>,
    /// Micro-USD per million prompt tokens, when priced.
    pub input_micro_usd_per_million: Option<u64>,
    /// Micro-USD per million completion tokens, when priced.
    pub output_micro_usd_per_million: Option<u64>,
    /// Where requests for it go (empty for members: that is the operator's business).
    pub deployments: Vec<DeploymentRoute>,
}

/// One upstream a model is served by.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentRoute {
    /// The provider's name in the configuration.
    pub provider: String,
    /// `openai`, `openai-compatible`, `azure-openai`, `anthropic` or `mock`.
    pub kind: String,
    pub base_url: Option<String>,
    /// The model name sent upstream.
    pub upstream_model: String,
    /// Its share of the model's requests, relative to the other deployments.
    pub weight: u32,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// On this gateway replica: `healthy`, `cooling_down` (no traffic after failures) or
    /// `probing` (one request is testing it); `null` when not known here.
    pub state: Option<String>,
    /// Requests in flight to it on this replica.
    pub in_flight: Option<u64>,
    /// Moving average of the time to first byte, in milliseconds; `null` until measured.
    pub ttfb_ms: Option<f64>,
    /// The last failure seen, e.g. `status 503` or `ReadTimedout`.
    pub last_error: Option<String>,
}

/// A provider's recent answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider: String,
    /// Requests it was sent in the window.
    pub requests: i64,
    /// Of those, answered with a 5xx or not at all.
    pub failures: i64,
    /// Mean latency of the requests in the window, in milliseconds.
    pub mean_latency_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Routes {
    pub models: Vec<ModelRoute>,
    /// Minutes the health figures cover.
    pub health_window_minutes: i64,
    /// Per provider with requests in the window (admins and viewers only).
    pub health: Vec<ProviderHealth>,
}

/// The models this gateway serves; admins and viewers also see deployments and health.
#[utoipa::path(get, operation_id = "routes_list", path = "/api/routes", tag = "routes",
    responses((status = 200, description = "OK", body = Routes), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn list(State(state): State<AdminState>, caller: Caller) -> ApiResult<Json<Routes>> {
    let member = caller.role() == Role::Member;
    let models = state
        .settings()
        .routes
        .read()
        .into_iter()
        .map(|mut m| {
            if member {
                m.deployments.clear();
            }
            m
        })
        .collect();
    let health = if member {
        Vec::new()
    } else {
        health(&state).await?
    };
    Ok(Json(Routes {
        models,
        health_window_minutes: HEALTH_WINDOW_MINUTES,
        health,
    }))
}

async fn health(state: &AdminState) -> ApiResult<Vec<ProviderHealth>> {
    use usage_event::Column as C;
    let since = Utc::now() - Duration::minutes(HEALTH_WINDOW_MINUTES);
    let mut q = Query::select();
    q.from(usage_event::Entity)
        .expr_as(Expr::col(C::Deployment), Alias::new("provider"))
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("requests"))
        .expr_as(
            Expr::cust(
                "CAST(COALESCE(SUM(CASE WHEN status >= 500 OR status = 0 THEN 1 ELSE 0 END), 0) AS BIGINT)",
            ),
            Alias::new("failures"),
        )
        .expr_as(
            Expr::cust("CAST(AVG(latency_ms) AS BIGINT)"),
            Alias::new("mean_latency_ms"),
        )
        .and_where(C::OccurredAt.gte(since))
        .and_where(C::Deployment.ne(""))
        .add_group_by([Expr::col(C::Deployment)]);
    let mut out: HashMap<String, ProviderHealth> = HashMap::new();
    for row in state.db().query_all(&q).await? {
        let provider: String = row.try_get("", "provider")?;
        out.insert(
            provider.clone(),
            ProviderHealth {
                provider,
                requests: row.try_get("", "requests")?,
                failures: row.try_get("", "failures")?,
                mean_latency_ms: row.try_get("", "mean_latency_ms")?,
            },
        );
    }
    let mut health: Vec<ProviderHealth> = out.into_values().collect();
    health.sort_by(|a, b| a.provider.cmp(&b.provider));
    Ok(health)
}
