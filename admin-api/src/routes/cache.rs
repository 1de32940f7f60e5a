//! The response cache: purge entries (all, or a model's, or those a key stored) and read
//! what it holds with its hit ratio by model.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use tollgate_core::store::{audit, keys, usage};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AdminState, CachePurge,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::QueryParams,
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    /// Only this model's entries (its configured name).
    pub model: Option<String>,
    /// Only the entries this key's requests stored (the key's public id).
    pub key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Purged {
    /// Entries removed.
    pub purged: u64,
}

fn no_cache() -> ApiError {
    ApiError::Invalid {
        field: "cache".into(),
        message: "this admin process cannot reach the response cache: the in-process cache \
                  lives in the gateway (use its admin listener), or set TOLLGATE_REDIS_URL"
            .into(),
    }
}

/// Remove cached answers: all of them, a model's, or those a key's requests stored.
#[utoipa::path(delete, operation_id = "cache_purge", path = "/api/cache", tag = "cache", params(PurgeQuery),
    responses((status = 200, description = "Purged", body = Purged), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody), (status = 422, description = "No cache to purge", body = ErrorBody),
        (status = 503, description = "The cache store did not answer", body = ErrorBody)))]
pub async fn purge(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<PurgeQuery>,
) -> ApiResult<Json<Purged>> {
    caller.require_admin()?;
    let cache = state.cache().ok_or_else(no_cache)?;
    let key_id = match &q.key {
        Some(public_id) => Some(keys::get_key(state.db(), public_id).await?.id),
        None => None,
    };
    let which = CachePurge {
        model: q.model.clone(),
        key_id,
    };
    let purged = cache
        .purge(which)
        .await
        .map_err(|e| ApiError::Busy(format!("the cache store failed: {e}")))?;
    audit::record(
        state.db(),
        &caller.actor(),
        "cache.purge",
        "cache",
        q.model.as_deref().unwrap_or("*"),
        serde_json::json!({ "model": q.model, "key": q.key, "purged": purged }),
    )
    .await?;
    Ok(Json(Purged { purged }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The hit ratio's window, in hours back from now (default 24, at most 2,160).
    pub hours: Option<u32>,
}

#[derive(Serialize, ToSchema, Default)]
pub struct ModelCacheStats {
    pub model: String,
    /// Entries held now, and their bytes (as stored).
    pub entries: u64,
    pub bytes: u64,
    /// Requests in the window answered from the cache, sent upstream after a look-up, and
    /// that skipped it.
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    /// hits / (hits + misses); `null` with neither.
    pub hit_ratio: Option<f64>,
    /// Tokens the hits would have had the upstream generate and read.
    pub tokens_saved: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CacheStats {
    /// `memory` (in the gateway process), `redis`, or `null` when this process cannot
    /// reach the cache (then entries and bytes are 0).
    pub store: Option<String>,
    pub entries: u64,
    pub bytes: u64,
    pub window_hours: u32,
    pub models: Vec<ModelCacheStats>,
}

/// What the response cache holds, and its hits and misses by model over a window.
#[utoipa::path(get, operation_id = "cache_stats", path = "/api/cache/stats", tag = "cache", params(StatsQuery),
    responses((status = 200, description = "OK", body = CacheStats), (status = 403, description = "The caller's role does not allow this", body = ErrorBody),
        (status = 503, description = "The cache store did not answer", body = ErrorBody)))]
pub async fn stats(
    State(state): State<AdminState>,
    caller: Caller,
    QueryParams(q): QueryParams<StatsQuery>,
) -> ApiResult<Json<CacheStats>> {
    caller.require_reader()?;
    let hours = q.hours.unwrap_or(24);
    if !(1..=2_160).contains(&hours) {
        return Err(ApiError::Invalid {
            field: "hours".into(),
            message: "must be from 1 to 2160".into(),
        });
    }
    let mut models: BTreeMap<String, ModelCacheStats> = BTreeMap::new();
    let (store, entries, bytes) = match state.cache() {
        Some(cache) => {
            let holding = cache
                .holding()
                .await
                .map_err(|e| ApiError::Busy(format!("the cache store failed: {e}")))?;
            for (model, (entries, bytes)) in holding.by_model {
                let slot = models.entry(model.clone()).or_default();
                (slot.entries, slot.bytes) = (entries, bytes);
            }
            (
                Some(holding.store.to_string()),
                holding.entries,
                holding.bytes,
            )
        }
        None => (None, 0, 0),
    };
    let since = Utc::now() - Duration::hours(i64::from(hours));
    for row in usage::cache_outcomes(state.db(), since).await? {
        let slot = models.entry(row.model.clone()).or_default();
        match row.outcome.as_str() {
            "hit" => {
                slot.hits += row.requests;
                slot.tokens_saved += row.tokens;
            }
            "miss" => slot.misses += row.requests,
            _ => slot.bypasses += row.requests,
        }
    }
    let models = models
        .into_iter()
        .map(|(model, mut s)| {
            s.model = model;
            let looked = s.hits + s.misses;
            s.hit_ratio = (looked > 0).then(|| s.hits as f64 / looked as f64);
            s
        })
        .collect();
    Ok(Json(CacheStats {
        store,
        entries,
        bytes,
        window_hours: hours,
        models,
    }))
}
