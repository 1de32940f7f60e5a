//! Metric families updated away from the request phases — the key cache, Redis and
//! database calls, the usage writer, metering — registered once at start and reachable
//! from those components without threading a handle through each. Before registration
//! (unit tests of a component) every update is a no-op.

use std::{future::Future, sync::OnceLock, time::Instant};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    exponential_buckets, register,
};

pub struct Shared {
    /// `tollgate_key_cache_lookups_total{result="hit"}` and `{result="miss"}`, resolved once:
    /// every authenticated request counts one.
    key_cache_hits: IntCounter,
    key_cache_misses: IntCounter,
    key_cache_evictions: IntCounter,
    redis: HistogramVec,
    redis_errors: IntCounterVec,
    database: HistogramVec,
    database_errors: IntCounterVec,
    pub usage_queue: IntGauge,
    pub usage_batch: Histogram,
    pub spill_bytes: IntGauge,
    cost: IntCounterVec,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Operations timed, listed so every series exists (at zero) from the start.
const REDIS_OPERATIONS: [&str; 3] = ["reserve", "settle", "release"];
const DATABASE_OPERATIONS: [&str; 5] = [
    "key_lookup",
    "usage_insert",
    "key_warmup",
    "usage_retention",
    "usage_partitions",
];

fn boxed<T: prometheus::core::Collector + Clone + 'static>(c: &T) -> prometheus::Result<T> {
    register(Box::new(c.clone()))?;
    Ok(c.clone())
}

/// Registers the families in the default registry; later calls change nothing.
pub fn register_shared() -> prometheus::Result<()> {
    if SHARED.get().is_some() {
        return Ok(());
    }
    let fast = exponential_buckets(0.000_05, 2.0, 16)?;
    let key_cache = boxed(&IntCounterVec::new(
        Opts::new(
            "tollgate_key_cache_lookups_total",
            "Issued-key look-ups by result: hit (served from the in-process cache) or miss (read from the database)",
        ),
        &["result"],
    )?)?;
    let shared = Shared {
        key_cache_hits: key_cache.with_label_values(&["hit"]),
        key_cache_misses: key_cache.with_label_values(&["miss"]),
        key_cache_evictions: boxed(&IntCounter::new(
            "tollgate_key_cache_evictions_total",
            "Key-cache entries dropped: changed keys, users or teams, and entries pushed out when full",
        )?)?,
        redis: boxed(&HistogramVec::new(
            HistogramOpts::new(
                "tollgate_redis_seconds",
                "Redis calls of the quota store by operation (a batched script call counts once)",
            )
            .buckets(fast.clone()),
            &["operation"],
        )?)?,
        redis_errors: boxed(&IntCounterVec::new(
            Opts::new(
                "tollgate_redis_errors_total",
                "Redis calls that failed or got no answer, by operation",
            ),
            &["operation"],
        )?)?,
        database: boxed(&HistogramVec::new(
            HistogramOpts::new(
                "tollgate_database_seconds",
                "Database calls of the gateway by operation",
            )
            .buckets(fast),
            &["operation"],
        )?)?,
        database_errors: boxed(&IntCounterVec::new(
            Opts::new(
                "tollgate_database_errors_total",
                "Database calls that failed, by operation",
            ),
            &["operation"],
        )?)?,
        usage_queue: boxed(&IntGauge::new(
            "tollgate_usage_queue_depth",
            "Finished requests waiting to be metered and written",
        )?)?,
        usage_batch: boxed(&Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_usage_batch_size",
                "Usage events per database write",
            )
            .buckets(exponential_buckets(1.0, 2.0, 12)?),
        )?)?,
        spill_bytes: boxed(&IntGauge::new(
            "tollgate_usage_spill_bytes",
            "Size of the spill file: usage events kept on disk while the database is unreachable",
        )?)?,
        cost: boxed(&IntCounterVec::new(
            Opts::new(
                "tollgate_cost_micro_usd_total",
                "Spend metered, in micro-USD, by model and provider",
            ),
            &["model", "provider"],
        )?)?,
    };
    for op in REDIS_OPERATIONS {
        shared.redis_errors.with_label_values(&[op]);
    }
    for op in DATABASE_OPERATIONS {
        shared.database_errors.with_label_values(&[op]);
    }
    let _ = SHARED.set(shared);
    Ok(())
}

pub fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

/// Counts a key look-up served from the cache (`hit`) or not.
pub fn key_cache_lookup(hit: bool) {
    if let Some(m) = shared() {
        if hit {
            m.key_cache_hits.inc();
        } else {
            m.key_cache_misses.inc();
        }
    }
}

pub fn key_cache_evicted(entries: usize) {
    if let Some(m) = shared() {
        m.key_cache_evictions.inc_by(entries as u64);
    }
}

/// Metered spend of one request.
pub fn cost(model: &str, provider: &str, micro_usd: i64) {
    if let (Some(m), Ok(micro_usd)) = (shared(), u64::try_from(micro_usd)) {
        m.cost
            .with_label_values(&[model, provider])
            .inc_by(micro_usd);
    }
}

/// Times a Redis call and counts it if it failed.
pub async fn redis<T, E>(
    operation: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    timed(operation, call, |m| (&m.redis, &m.redis_errors)).await
}

/// Times a database call and counts it if it failed.
pub async fn database<T, E>(
    operation: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    timed(operation, call, |m| (&m.database, &m.database_errors)).await
}

async fn timed<T, E>(
    operation: &str,
    call: impl Future<Output = Result<T, E>>,
    families: fn(&Shared) -> (&HistogramVec, &IntCounterVec),
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    if let Some((latency, errors)) = shared().map(families) {
        latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            errors.with_label_values(&[operation]).inc();
        }
    }
    result
}
