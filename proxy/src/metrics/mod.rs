//! Prometheus metrics of the proxy, and the listener that serves `/metrics`, `/healthz`
//! and `/readyz`. Labels are model, provider, endpoint and status: never keys or users.

pub mod access_log;
pub mod deployments;
pub mod handles;
mod request;
pub mod shared;

use std::sync::Arc;

use crate::server::{listeners::ListenerSlot, readiness::Readiness};
use async_trait::async_trait;
use axum::{Router, http::StatusCode, routing::get};
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use prometheus::{
    Encoder, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, TextEncoder, exponential_buckets,
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};
use tollgate_core::config::AccessLog;

pub struct Metrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_first_byte: HistogramVec,
    pub tokens: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub in_flight: IntGauge,
    pub quota_rejections: IntCounterVec,
    pub quota_store_errors: IntCounterVec,
    pub quota_check: HistogramVec,
    /// Requests and tokens this replica holds in leased slices of quota scopes.
    pub quota_leased: IntGaugeVec,
    pub usage_events: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Attempts made again on another deployment, by model and why.
    pub retries: IntCounterVec,
    /// Requests moved on to a fallback model, by the model asked and the fallback.
    pub fallbacks: IntCounterVec,
    /// Time spent in the gateway itself, upstream waits excluded.
    pub overhead: HistogramVec,
    pub streams_in_flight: IntGauge,
    /// Upstream connections taken for attempts, new or reused from the pool.
    pub upstream_connections: IntCounterVec,
    /// `overhead`'s series by endpoint, resolved once.
    pub overhead_by_endpoint: handles::OverheadHandles,
    /// `quota_check`'s series by store, resolved once.
    pub quota_check_by_store: handles::QuotaCheckHandles,
    /// Which requests get an access-log line (`log.access`).
    pub access_log: AccessLog,
}

impl Metrics {
    /// Registers the metrics in the default registry, which `/metrics` serves. Once per process.
    pub fn register() -> prometheus::Result<Metrics> {
        shared::register_shared()?;
        let latency = exponential_buckets(0.001, 2.0, 18)?;
        let metrics = Metrics {
            requests: register_int_counter_vec!(
                "tollgate_requests_total",
                "Requests answered, by endpoint, model, provider and status",
                &["endpoint", "model", "provider", "status"]
            )?,
            duration: register_histogram_vec!(
                "tollgate_request_duration_seconds",
                "Time from request arrival to the last response byte",
                &["endpoint", "model"],
                latency.clone()
            )?,
            upstream_first_byte: register_histogram_vec!(
                "tollgate_upstream_first_byte_seconds",
                "Time from request arrival until the upstream's response head",
                &["model", "provider"],
                latency
            )?,
            tokens: register_int_counter_vec!(
                "tollgate_tokens_total",
                "Tokens reported by upstreams, by model, provider and kind (prompt, completion)",
                &["model", "provider", "kind"]
            )?,
            upstream_errors: register_int_counter_vec!(
                "tollgate_upstream_errors_total",
                "Failed upstream attempts, by provider and error kind",
                &["provider", "kind"]
            )?,
            in_flight: register_int_gauge!("tollgate_requests_in_flight", "Requests being served")?,
            quota_rejections: register_int_counter_vec!(
                "tollgate_quota_rejections_total",
                "Requests refused by a quota, by dimension",
                &["dimension"]
            )?,
            quota_store_errors: register_int_counter_vec!(
                "tollgate_quota_store_errors_total",
                "Quota store calls that failed, by what was done about it (fail_open: served under the per-process limiter; fail_closed: refused)",
                &["handling"]
            )?,
            quota_check: register_histogram_vec!(
                "tollgate_quota_check_seconds",
                "Time to check and reserve a request's quotas (a rare rebuild of a spend counter included), by store (shared: Redis; local: in-process; lease: this replica's leased slices)",
                &["store"],
                exponential_buckets(0.000_025, 2.0, 16)?
            )?,
            quota_leased: register_int_gauge_vec!(
                "tollgate_quota_leased",
                "Allowance this replica holds in leased slices of quota scopes, by dimension (requests, tokens)",
                &["dimension"]
            )?,
            usage_events: register_int_counter_vec!(
                "tollgate_usage_events_total",
                "Usage events by outcome: written, spilled (database unreachable), replayed, dropped",
                &["outcome"]
            )?,
            config_reloads: register_int_counter_vec!(
                "tollgate_config_reloads_total",
                "Config reloads (SIGHUP, a changed file, a changed stored credential) by result: ok or error",
                &["result"]
            )?,
            retries: register_int_counter_vec!(
                "tollgate_upstream_retries_total",
                "Attempts retried on another deployment, by model and reason (an upstream status, timeout, connect)",
                &["model", "reason"]
            )?,
            fallbacks: register_int_counter_vec!(
                "tollgate_fallbacks_total",
                "Requests moved on to a fallback model after every deployment of theirs failed",
                &["model", "fallback"]
            )?,
            overhead: register_histogram_vec!(
                "tollgate_overhead_seconds",
                "Time each request spent in Tollgate itself until its response head went out: its whole time minus the waits on upstreams (connect to response head)",
                &["endpoint"],
                exponential_buckets(0.000_025, 2.0, 18)?
            )?,
            streams_in_flight: register_int_gauge!(
                "tollgate_streams_in_flight",
                "Streamed (SSE) responses being sent"
            )?,
            upstream_connections: register_int_counter_vec!(
                "tollgate_upstream_connections_total",
                "Upstream connections used by attempts, by provider and whether the connection was reused from the pool",
                &["provider", "reused"]
            )?,
            overhead_by_endpoint: handles::OverheadHandles::default(),
            quota_check_by_store: handles::QuotaCheckHandles::default(),
            access_log: AccessLog::All,
        };
        // Series of a fixed label set exist from the start (at 0), so dashboards and alerts
        // see a zero rather than nothing.
        for handling in ["fail_open", "fail_closed"] {
            metrics.quota_store_errors.with_label_values(&[handling]);
        }
        for dimension in ["requests", "tokens"] {
            metrics.quota_leased.with_label_values(&[dimension]);
        }
        for outcome in ["written", "spilled", "replayed", "dropped"] {
            metrics.usage_events.with_label_values(&[outcome]);
        }
        for result in ["ok", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on a listener bound at start-up.
pub struct MetricsService {
    listener: ListenerSlot,
    readiness: Arc<Readiness>,
}

impl MetricsService {
    pub fn new(listener: std::net::TcpListener, readiness: Arc<Readiness>) -> Self {
        MetricsService {
            listener: ListenerSlot::new("metrics", listener),
            readiness,
        }
    }
}

/// The routes of the metrics listener (also served by `tollgate admin`).
pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (ready, report) = readiness.check().await;
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(report))
                }
            }),
        )
}

#[async_trait]
impl BackgroundService for MetricsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let app = router(self.readiness.clone());
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!("metrics listener: {e}");
        }
    }
}

async fn render() -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let mut out = Vec::with_capacity(16 * 1024);
    let families = prometheus::gather();
    match TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            e.to_string().into_bytes(),
        ),
    }
}
