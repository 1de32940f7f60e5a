//! The cache's Prometheus series.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, core::Collector};

pub struct CacheMetrics {
    /// Requests by model and result: hit, miss, bypass.
    pub requests: IntCounterVec,
    pub stores: IntCounterVec,
    pub evictions: IntCounter,
    /// Bytes the in-process store holds.
    pub bytes: IntGauge,
    pub coalesced: IntCounterVec,
    /// Store calls that failed, by operation: each is a miss (or an answer not stored).
    pub errors: IntCounterVec,
}

/// Registers `collector`; a second cache in one process (tests) keeps its own series.
fn registered<C: Collector + Clone + 'static>(collector: C) -> C {
    let _ = prometheus::register(Box::new(collector.clone()));
    collector
}

impl CacheMetrics {
    pub fn register() -> prometheus::Result<CacheMetrics> {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map(registered)
        };
        Ok(CacheMetrics {
            requests: vec(
                "tollgate_cache_requests_total",
                "Requests to cached models by model and result: hit (answered from the cache), miss (went upstream), bypass (skipped the cache)",
                &["model", "result"],
            )?,
            stores: vec(
                "tollgate_cache_stores_total",
                "Answers stored in the cache, by model",
                &["model"],
            )?,
            evictions: registered(IntCounter::new(
                "tollgate_cache_evictions_total",
                "Entries the in-process cache evicted to stay within cache.max_memory",
            )?),
            bytes: registered(IntGauge::new(
                "tollgate_cache_bytes",
                "Bytes of answers the in-process cache holds",
            )?),
            coalesced: vec(
                "tollgate_cache_coalesced_total",
                "Requests that waited for an identical one in flight and were served its answer, by model",
                &["model"],
            )?,
            errors: vec(
                "tollgate_cache_errors_total",
                "Cache store calls that failed (each a miss, or an answer not stored), by operation",
                &["operation"],
            )?,
        })
    }
}
