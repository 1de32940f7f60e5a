//! Prometheus metrics of the proxy, and the listener that serves `/metrics`, `/healthz`
//! and `/readyz`. Labels are model, provider, endpoint and status: never keys or users.

pub mod deployments;
mod request;

use std::{net::SocketAddr, time::Duration};

use crate::server::listeners::ListenerSlot;
use async_trait::async_trait;
use axum::{Router, http::StatusCode, routing::get};
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use prometheus::{
    Encoder, HistogramVec, IntCounterVec, IntGauge, TextEncoder, exponential_buckets,
    register_histogram_vec, register_int_counter_vec, register_int_gauge,
};

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
    pub usage_events: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Attempts made again on another deployment, by model and why.
    pub retries: IntCounterVec,
    /// Requests moved on to a fallback model, by the model asked and the fallback.
    pub fallbacks: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in the default registry, which `/metrics` serves. Once per process.
    pub fn register() -> prometheus::Result<Metrics> {
        let latency = exponential_buckets(0.001, 2.0, 18)?;
        Ok(Metrics {
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
                "Time to check and reserve a request's quotas (a rare rebuild of a spend counter included), by store (shared: Redis; local: in-process)",
                &["store"],
                exponential_buckets(0.000_025, 2.0, 16)?
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
        })
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on a listener bound at start-up.
pub struct MetricsService {
    listener: ListenerSlot,
    proxy_addr: SocketAddr,
}

impl MetricsService {
    pub fn new(listener: std::net::TcpListener, proxy_addr: SocketAddr) -> Self {
        MetricsService {
            listener: ListenerSlot::new("metrics", listener),
            proxy_addr,
        }
    }
}

#[async_trait]
impl BackgroundService for MetricsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let proxy_addr = self.proxy_addr;
        let app = Router::new()
            .route("/metrics", get(render))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(move || ready(proxy_addr)));
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

/// Ready when the proxy listener accepts connections.
async fn ready(proxy_addr: SocketAddr) -> (StatusCode, &'static str) {
    let mut target = proxy_addr;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    match tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy listener not accepting connections\n",
        ),
    }
}
