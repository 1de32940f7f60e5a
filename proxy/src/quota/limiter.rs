//! Quotas on the request path: builds a key's reservation (estimated tokens and cost),
//! asks the store, and settles afterwards. When Redis fails, `quota.on_store_error`
//! decides: fail-open serves under a per-process limiter with the same limits and adds
//! what it let through to the shared counts and spend once Redis is back; fail-closed
//! refuses. Either way a reservation whose answer never came is handed back to the store,
//! which frees it (or counts it as served) once Redis answers again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use tollgate_core::{
    body::RequestProbe,
    config::{OnStoreError, Pricing, QuotaSettings},
    store::usage::{self, Spender},
};

use crate::{
    backend::Backend,
    error::{GatewayError, RateLimit},
    metering::Meter,
    metrics::{Metrics, handles::QuotaCheck},
    quota::{
        Decision, MemoryStore, Owner, QuotaError, QuotaStore, Reservation, Scoped, Snapshot, Usage,
        leases::LeaseBook, now_ms, scopes::estimate_prompt_tokens,
    },
};

/// Why a reservation could not be decided.
enum ReserveError {
    /// The quota store failed (Redis unreachable).
    Store(QuotaError),
    /// A lost spend counter could not be rebuilt: the database is unreachable.
    Database,
}

/// Which store holds a reservation, so it is settled where it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    Shared,
    Local,
    /// Admitted from this replica's leased slices.
    Leased,
}

/// A request's admitted reservation.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub reservation: Reservation,
    pub backing: Backing,
    pub snapshot: Snapshot,
}

impl Admitted {
    /// Takes the deployment's scope out into a reservation of its own (same id), so it can
    /// be released apart from the client's scopes when another deployment served.
    pub fn split_deployment(&mut self) -> Option<Admitted> {
        let at = self
            .reservation
            .scopes
            .iter()
            .position(|s| s.owner == Owner::Deployment)?;
        let scope = self.reservation.scopes.remove(at);
        let mut reservation = self.reservation.clone();
        reservation.scopes = vec![scope];
        Some(Admitted {
            reservation,
            backing: self.backing,
            snapshot: self.snapshot,
        })
    }
}

/// A reservation to settle when its request ends: to the real usage, or released with
/// nothing used (a deployment the request was not served by).
#[derive(Debug, Clone)]
pub struct Settlement {
    pub admitted: Admitted,
    pub used: bool,
}

pub struct Limiter {
    store: Arc<dyn QuotaStore>,
    /// For rebuilding spend counters from usage events.
    backend: Arc<Backend>,
    /// Serves while the shared store is down (fail-open); `None` when `store` is local.
    fallback: Option<MemoryStore>,
    settings: QuotaSettings,
    /// Budget scopes served by the fallback during an outage. Their shared spend counters
    /// miss that spend, so once the shared store answers again they are dropped and rebuilt
    /// from the usage events, which hold it (and the fallback starts afresh next time).
    served_locally: Mutex<HashMap<String, Scoped>>,
    meter: std::sync::OnceLock<std::sync::Weak<Meter>>,
    /// Slices of large limits leased from the shared store (see `leases`).
    leases: Option<Arc<LeaseBook>>,
    /// Per budget scope, the one rebuild of its spend counter under way and when it last
    /// seeded: requests that find the counter missing together (a burst at the start of a
    /// period, or under the fail-open limiter) wait for one rebuild instead of each querying
    /// the database.
    seeding: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<std::time::Instant>>>>>,
}

/// What a request claims in each scope it counts against, before it is sent.
pub struct Claim<'a> {
    pub request_id: &'a str,
    /// Size of the body as sent upstream: the prompt estimate.
    pub body_len: usize,
    pub probe: &'a RequestProbe,
    /// Whether the endpoint generates tokens (not embeddings).
    pub completes: bool,
    pub pricing: Option<&'a Pricing>,
}

/// Rebuild gates kept before unused ones are dropped.
const MAX_SEEDING_GATES: usize = 10_000;

/// Upper bounds on what one request may reserve, whatever it asks for.
const MAX_COMPLETION_TOKENS: u64 = 10_000_000;
const MAX_CHOICES: u64 = 128;

impl Limiter {
    pub fn new(
        store: Arc<dyn QuotaStore>,
        shared: bool,
        settings: QuotaSettings,
        backend: Arc<Backend>,
    ) -> Arc<Self> {
        Self::build(store, shared, settings, backend, None)
    }

    /// As [`Limiter::new`] with a shared store, admitting from `leases` where they have room.
    pub fn with_leases(
        store: Arc<dyn QuotaStore>,
        settings: QuotaSettings,
        backend: Arc<Backend>,
        leases: Arc<LeaseBook>,
    ) -> Arc<Self> {
        Self::build(store, true, settings, backend, Some(leases))
    }

    fn build(
        store: Arc<dyn QuotaStore>,
        shared: bool,
        settings: QuotaSettings,
        backend: Arc<Backend>,
        leases: Option<Arc<LeaseBook>>,
    ) -> Arc<Self> {
        Arc::new(Limiter {
            store,
            backend,
            fallback: shared.then(MemoryStore::new),
            settings,
            served_locally: Mutex::new(HashMap::new()),
            meter: std::sync::OnceLock::new(),
            leases,
            seeding: Mutex::new(HashMap::new()),
        })
    }

    pub fn slot_lease(&self) -> Duration {
        self.settings.slot_lease
    }

    /// Builds the reservation of one request counting against `scopes`; `None` when none
    /// of them has limits.
    pub fn reservation(&self, scopes: Vec<Scoped>, claim: &Claim<'_>) -> Option<Reservation> {
        if scopes.is_empty() {
            return None;
        }
        let prompt = estimate_prompt_tokens(claim.body_len);
        // Client-chosen numbers, bounded: no request generates more than this.
        let completion = if claim.completes {
            claim
                .probe
                .max_tokens
                .unwrap_or(self.settings.default_max_tokens)
                .min(MAX_COMPLETION_TOKENS)
                .saturating_mul(claim.probe.choices.clamp(1, MAX_CHOICES))
        } else {
            0
        };
        let cost = claim.pricing.map_or(0, |p| p.cost(prompt, completion));
        Some(Reservation {
            id: format!("{}.{:08x}", claim.request_id, fastrand::u32(..)),
            now_ms: now_ms(),
            scopes,
            tokens: prompt.saturating_add(completion),
            cost,
            lease_ms: self.settings.slot_lease.as_millis() as u64,
        })
    }

    /// Checks and reserves; `Err` is the error to answer with.
    pub async fn admit(
        self: &Arc<Self>,
        reservation: Reservation,
        metrics: &Metrics,
    ) -> Result<Admitted, GatewayError> {
        let started = std::time::Instant::now();
        if let Some(snapshot) = self.leases.as_ref().and_then(|l| l.try_admit(&reservation)) {
            metrics
                .quota_check_by_store
                .get(metrics, QuotaCheck::Lease)
                .observe(started.elapsed().as_secs_f64());
            return Ok(Admitted {
                reservation,
                backing: Backing::Leased,
                snapshot,
            });
        }
        let checked = self.reserve_seeded(self.store.as_ref(), &reservation).await;
        let store = if self.fallback.is_some() {
            QuotaCheck::Shared
        } else {
            QuotaCheck::Local
        };
        metrics
            .quota_check_by_store
            .get(metrics, store)
            .observe(started.elapsed().as_secs_f64());
        let (decision, backing) = match checked {
            Ok(decision) => {
                self.recovered().await;
                (decision, Backing::Shared)
            }
            Err(ReserveError::Database) => return Err(GatewayError::KeyStoreUnavailable),
            Err(ReserveError::Store(e)) => {
                // A reserve that went out may still be applied; unless the request is served
                // below, the store takes it back once it answers again.
                let refused = || {
                    if e.maybe_applied() {
                        self.store.abandoned(&reservation, None);
                    }
                };
                match (&self.fallback, self.settings.on_store_error) {
                    (Some(local), OnStoreError::FailOpen) => {
                        metrics
                            .quota_store_errors
                            .with_label_values(&["fail_open"])
                            .inc();
                        tracing::warn!("quota store failed, serving under the local limiter: {e}");
                        let local = self.reserve_seeded(local, &reservation).await;
                        if !matches!(local, Ok(Decision::Allowed(_))) {
                            refused();
                        }
                        match local {
                            Ok(decision) => (decision, Backing::Local),
                            Err(ReserveError::Database) => {
                                return Err(GatewayError::KeyStoreUnavailable);
                            }
                            Err(ReserveError::Store(_)) => {
                                return Err(GatewayError::QuotaUnavailable);
                            }
                        }
                    }
                    _ => {
                        metrics
                            .quota_store_errors
                            .with_label_values(&["fail_closed"])
                            .inc();
                        tracing::error!("quota store failed, refusing: {e}");
                        refused();
                        return Err(GatewayError::QuotaUnavailable);
                    }
                }
            }
        };
        match decision {
            Decision::Unseeded(_) => Err(GatewayError::QuotaUnavailable),
            Decision::Allowed(snapshot) => Ok(Admitted {
                reservation,
                backing,
                snapshot,
            }),
            Decision::Rejected {
                dimension,
                scope,
                retry_after_ms,
                snapshot,
            } => {
                let refused = reservation
                    .scopes
                    .get(scope)
                    .cloned()
                    .ok_or(GatewayError::Internal)?;
                let resets_at = refused
                    .limits
                    .budget
                    .as_ref()
                    .and_then(|b| b.period.resets_at(Utc::now()));
                Err(GatewayError::RateLimited(Box::new(RateLimit {
                    dimension,
                    owner: refused.owner,
                    retry_after_ms,
                    snapshot,
                    limits: refused.limits,
                    resets_at,
                })))
            }
        }
    }

    /// Reserves; a budget counter the store does not have (a new period, or Redis lost it)
    /// is first rebuilt from the usage events in the database.
    async fn reserve_seeded(
        &self,
        store: &dyn QuotaStore,
        reservation: &Reservation,
    ) -> Result<Decision, ReserveError> {
        // Each round seeds one scope (or finds it seeded by another request meanwhile).
        for _ in 0..=2 * reservation.scopes.len() {
            let decision = store
                .reserve(reservation)
                .await
                .map_err(ReserveError::Store)?;
            let Decision::Unseeded(i) = decision else {
                return Ok(decision);
            };
            let scope = reservation.scopes.get(i).ok_or(ReserveError::Database)?;
            let gate = self.seeding_gate(&scope.scope);
            let waited_from = std::time::Instant::now();
            let mut seeded = gate.lock().await;
            if seeded.is_some_and(|at| at >= waited_from) {
                // Another request rebuilt it while this one waited: ask again.
                continue;
            }
            let spent = self.spent(scope).await?;
            store
                .seed_spend(scope, spent)
                .await
                .map_err(ReserveError::Store)?;
            *seeded = Some(std::time::Instant::now());
        }
        Err(ReserveError::Database)
    }

    /// The rebuild gate of a budget scope.
    fn seeding_gate(&self, scope: &str) -> Arc<tokio::sync::Mutex<Option<std::time::Instant>>> {
        let Ok(mut gates) = self.seeding.lock() else {
            return Arc::default();
        };
        if gates.len() >= MAX_SEEDING_GATES {
            // Only gates in use are kept: the others' rebuilds are long done.
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        gates.entry(scope.to_string()).or_default().clone()
    }

    /// Writes the usage events still queued, so that sums over the events include them.
    async fn flush_events(&self) {
        if let Some(meter) = self.meter.get().and_then(std::sync::Weak::upgrade)
            && tokio::time::timeout(Duration::from_secs(2), meter.flush())
                .await
                .is_err()
        {
            tracing::warn!("usage events were not written in time before rebuilding a budget");
        }
    }

    /// What a scope spent in its current budget period, from the usage events (rare: a new
    /// period, a lost counter). Queued events are written first; a request settling at that
    /// very moment may count twice, never not at all.
    async fn spent(&self, scope: &Scoped) -> Result<i64, ReserveError> {
        self.flush_events().await;
        let since = scope
            .limits
            .budget
            .as_ref()
            .and_then(|b| b.period.started_at(Utc::now()));
        let who = match scope.owner {
            Owner::Key(id) => Spender::Key(id),
            Owner::User(id) => Spender::User(id),
            Owner::Team(id) => Spender::Team(id),
            Owner::Deployment => return Ok(0),
        };
        let db = self.backend.db.clone();
        match self
            .backend
            .run(async move { usage::spent(&db, who, since).await })
            .await
        {
            Some(Ok(spent)) => Ok(spent),
            Some(Err(e)) => {
                tracing::error!("rebuilding a budget's spend from usage events failed: {e}");
                Err(ReserveError::Database)
            }
            None => Err(ReserveError::Database),
        }
    }

    /// Settles a reservation admitted from leased slices, which needs no store call; false
    /// for any other (settle it with [`Limiter::settle`]).
    pub fn settle_now(&self, s: &Settlement, used: Usage) -> bool {
        if s.admitted.backing != Backing::Leased {
            return false;
        }
        if let Some(leases) = &self.leases {
            // A deployment that did not serve used nothing of what it reserved.
            let used = if s.used { used } else { Usage::default() };
            leases.settle(&s.admitted.reservation, used);
        }
        true
    }

    /// Settles a reservation to what the request used (nothing, where it was not served)
    /// and frees its slot.
    pub async fn settle(&self, s: &Settlement, used: Usage) {
        let admitted = &s.admitted;
        if self.settle_now(s, used) {
            return;
        }
        let store: &dyn QuotaStore = match (admitted.backing, &self.fallback) {
            (Backing::Local, Some(local)) => {
                // The shared store counts it too, once it answers again.
                self.store
                    .abandoned(&admitted.reservation, s.used.then_some(used));
                local
            }
            _ => self.store.as_ref(),
        };
        if let Err(e) = store.settle(&admitted.reservation, used).await {
            tracing::warn!("settling a quota reservation failed: {e}");
        }
        if admitted.backing == Backing::Local
            && let Ok(mut served) = self.served_locally.lock()
        {
            for scope in admitted
                .reservation
                .scopes
                .iter()
                .filter(|s| s.limits.budget.is_some())
            {
                served.insert(scope.scope.clone(), scope.clone());
            }
        }
    }

    /// Settles when the real usage is unknown: as if everything reserved was used, which
    /// never undercounts (a deployment that did not serve is released).
    pub async fn settle_reserved(&self, s: &Settlement) {
        let reserved = &s.admitted.reservation;
        let used = if s.used {
            Usage {
                tokens: reserved.tokens,
                cost: reserved.cost,
            }
        } else {
            Usage::default()
        };
        self.settle(s, used).await;
    }

    /// Lets the limiter write queued usage events before it rebuilds spend from them.
    pub fn set_meter(&self, meter: &Arc<Meter>) {
        let _ = self.meter.set(Arc::downgrade(meter));
    }

    /// After an outage: writes the queued usage events, drops the shared spend counters of
    /// the budgets served locally so they are rebuilt from those events, and clears the
    /// fallback for the next outage. Runs once, in the first request that reaches the
    /// shared store again, before it goes on.
    async fn recovered(&self) {
        let scopes: Vec<Scoped> = match self.served_locally.lock() {
            Ok(mut served) if !served.is_empty() => served.drain().map(|(_, s)| s).collect(),
            _ => return,
        };
        self.flush_events().await;
        for scope in scopes {
            if let Err(e) = self.store.forget_spend(&scope).await {
                tracing::warn!("dropping a spend counter after an outage failed: {e}");
            }
        }
        if let Some(local) = &self.fallback {
            local.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use tollgate_core::config::OnStoreError;

    use super::*;
    use crate::quota::{Budget, Limits, Period};

    /// The in-process store, counting the spend counters it is given, answering after a
    /// moment as a remote store does (so that a burst's requests all find the counter
    /// missing before the first rebuild ends).
    struct Counting {
        inner: MemoryStore,
        seeds: AtomicU64,
    }

    #[async_trait]
    impl QuotaStore for Counting {
        async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.inner.reserve(r).await
        }
        async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
            self.inner.settle(r, used).await
        }
        async fn seed_spend(&self, scope: &Scoped, micro_usd: i64) -> Result<(), QuotaError> {
            self.seeds.fetch_add(1, Ordering::SeqCst);
            self.inner.seed_spend(scope, micro_usd).await
        }
        async fn forget_spend(&self, scope: &Scoped) -> Result<(), QuotaError> {
            self.inner.forget_spend(scope).await
        }
    }

    #[test]
    fn a_burst_that_finds_a_spend_counter_missing_rebuilds_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::backend::test_backend(dir.path());
        let rt = backend.handle().clone();
        let store = Arc::new(Counting {
            inner: MemoryStore::new(),
            seeds: AtomicU64::new(0),
        });
        let settings = QuotaSettings {
            on_store_error: OnStoreError::FailClosed,
            default_max_tokens: 16,
            slot_lease: Duration::from_secs(60),
            leases: false,
        };
        let limiter = Limiter::new(store.clone(), false, settings, backend.clone());
        let reservation = |i: u32| Reservation {
            id: format!("r{i}"),
            now_ms: now_ms(),
            scopes: vec![Scoped {
                scope: "k:1".into(),
                limits: Limits {
                    budget: Some(Budget::new(1_000_000, Period::Month, Utc::now())),
                    ..Limits::default()
                },
                owner: Owner::Key(1),
            }],
            tokens: 10,
            cost: 1,
            lease_ms: 60_000,
        };
        let decisions = rt.block_on(async {
            let calls = (0..200).map(|i| {
                let (limiter, store) = (limiter.clone(), store.clone());
                tokio::spawn(async move {
                    matches!(
                        limiter
                            .reserve_seeded(store.as_ref(), &reservation(i))
                            .await,
                        Ok(Decision::Allowed(_))
                    )
                })
            });
            futures_util::future::join_all(calls).await
        });
        assert!(decisions.into_iter().all(|d| d.unwrap()));
        assert_eq!(store.seeds.load(Ordering::SeqCst), 1);
    }
}
