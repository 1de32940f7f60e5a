//! Quota leasing: takes Redis off the request path for scopes with large request and token
//! limits. Each replica leases a slice of such a scope's allowance from the shared bucket
//! (lease.lua raises the bucket's level by the whole slice at once) and admits requests from
//! it locally, with no await; a background task tops slices up, returns what goes unused
//! and reports settled token differences, every [`SYNC_EVERY`].
//!
//! Exactness: every request admitted from a lease was counted in the shared bucket before
//! it was admitted, so the fleet never admits more than a limit. The price is allowance
//! stranded on a replica (at most one slice per scope per replica, unused when demand stops
//! or the replica dies), which makes the fleet admit slightly fewer; and the
//! `x-ratelimit-remaining-*` headers of a leased scope are estimates (the bucket's state at
//! the last sync plus what is left in this replica's slice).
//!
//! Small limits stay exact per request: a scope is leased only when its limit is large
//! against the number of replicas leasing it ([`MIN_REQUESTS_PER_LESSEE`] a minute each),
//! and a scope whose bucket is nearly empty is not leased until it refills. Scopes with a
//! concurrency limit or a budget always take the direct, per-request reserve.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{Limits, QuotaError, Reservation, Snapshot, Usage, WINDOW};

/// How often leases are topped up and returned.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);
/// A slice is used for at most this long after it was granted; lessees in Redis expire
/// later (twice this), so a replica always stops using a slice before Redis forgets it.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// A scope is leased only if each replica leasing it gets at least this many requests a
/// minute (and as many average requests' tokens): below, per-request reserves stay exact
/// and cheap enough.
pub const MIN_REQUESTS_PER_LESSEE: u64 = 50;
/// A slice holds about this much of the replica's recent demand.
const HORIZON: Duration = Duration::from_millis(250);
/// No replica holds more than this fraction of a limit (divided by the lessees).
const SHARE_DIVISOR: u64 = 4;
/// A scope seen idle this many syncs returns its slice.
const IDLE_SYNCS: u32 = 20;
/// A scope idle this many syncs, with no slice, is forgotten.
const FORGET_SYNCS: u32 = 200;
/// After a sync found the bucket nearly empty, requests take the direct reserve this long.
const STARVED_FOR: Duration = Duration::from_millis(250);
/// Most scopes in one lease call.
const MAX_BATCH: usize = 64;

/// One scope's ask in a lease call.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAsk {
    pub scope: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub want_requests: u64,
    pub want_tokens: u64,
    /// Fewer tokens than this are not worth a lease.
    pub min_tokens: u64,
    /// Unused requests and tokens handed back (already reduced by what the bucket drained
    /// since they were granted).
    pub return_requests: u64,
    pub return_tokens: u64,
    /// Settled minus reserved tokens of requests admitted from slices.
    pub token_change: i64,
}

/// The answer to one [`LeaseAsk`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    pub requests: u64,
    pub tokens: u64,
    /// What the shared bucket has left after the grant (`None`: no such limit).
    pub requests_left: Option<u64>,
    pub tokens_left: Option<u64>,
    /// Replicas holding a slice of the scope, this one included.
    pub lessees: u64,
}

/// Where slices come from: the Redis quota store.
#[async_trait]
pub trait LeaseSource: Send + Sync {
    /// Most scopes one call may ask for.
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn lease(&self, replica: &str, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, QuotaError>;
}

/// This replica's slices, by scope.
pub struct LeaseBook {
    /// This replica's name among the lessees.
    replica: String,
    scopes: RwLock<HashMap<String, Arc<ScopeLease>>>,
    /// `tollgate_quota_leased`, set after every sync.
    gauge: Option<prometheus::IntGaugeVec>,
}

/// One scope's slice and what is known of its bucket.
struct ScopeLease {
    state: Mutex<Slice>,
    /// Requests that asked for this scope since the last sync, admitted here or not.
    demand: AtomicU64,
}

#[derive(Debug)]
struct Slice {
    rpm: Option<u64>,
    tpm: Option<u64>,
    requests: u64,
    tokens: u64,
    /// The last grant: when it was asked for, and its size.
    granted_at: Option<Instant>,
    granted_requests: u64,
    granted_tokens: u64,
    /// The slice is not used from this moment on.
    expires: Option<Instant>,
    /// Settled minus reserved tokens of requests admitted from slices, not yet reported.
    token_change: i64,
    /// The bucket's state at the last sync.
    shared_requests_left: Option<u64>,
    shared_tokens_left: Option<u64>,
    lessees: u64,
    /// Demand, requests per second (moving average), and tokens per request.
    rate: f64,
    tokens_per_request: f64,
    idle_syncs: u32,
    starved_until: Option<Instant>,
}

impl Slice {
    fn new(limits: &Limits, tokens: u64) -> Self {
        Slice {
            rpm: limits.rpm,
            tpm: limits.tpm,
            requests: 0,
            tokens: 0,
            granted_at: None,
            granted_requests: 0,
            granted_tokens: 0,
            expires: None,
            token_change: 0,
            shared_requests_left: None,
            shared_tokens_left: None,
            lessees: 0,
            rate: 0.0,
            tokens_per_request: tokens as f64,
            idle_syncs: 0,
            starved_until: None,
        }
    }

    fn usable(&self, now: Instant, tokens: u64) -> bool {
        self.expires.is_some_and(|e| now < e)
            && (self.rpm.is_none() || self.requests >= 1)
            && (self.tpm.is_none() || self.tokens >= tokens)
    }

    /// Drops what is left of the slice; answers what may go back to the bucket: the unused
    /// part less what the bucket drained since the grant (the bucket may have emptied in
    /// between, and handing back more than it would still hold could let it admit more
    /// than its limit).
    fn take_back(&mut self, now: Instant) -> (u64, u64) {
        let drained = |limit: Option<u64>| {
            let since = self.granted_at.map_or(WINDOW, |at| now - at);
            limit.map_or(0.0, |l| {
                l as f64 * since.as_secs_f64() / WINDOW.as_secs_f64()
            })
        };
        let back = |left: u64, granted: u64, limit: Option<u64>| {
            // Only the last grant's part is handed back; older units are older than `since`.
            (left.min(granted) as f64 - drained(limit)).max(0.0) as u64
        };
        let requests = back(self.requests, self.granted_requests, self.rpm);
        let tokens = back(self.tokens, self.granted_tokens, self.tpm);
        self.requests = 0;
        self.tokens = 0;
        self.expires = None;
        (requests, tokens)
    }

    /// Whether the scope's limits are large enough to lease, with `lessees` replicas.
    fn leasable(&self) -> bool {
        let lessees = self.lessees.max(2);
        let requests = self
            .rpm
            .is_none_or(|rpm| rpm >= MIN_REQUESTS_PER_LESSEE * lessees);
        let tokens = self.tpm.is_none_or(|tpm| {
            tpm as f64 >= (MIN_REQUESTS_PER_LESSEE * lessees) as f64 * self.tokens_per_request
        });
        requests && tokens
    }
}

/// Whether a scope with these limits is ever leased: request and token limits only.
fn lease_kind(limits: &Limits) -> bool {
    limits.concurrency.is_none()
        && limits.budget.is_none()
        && (limits.rpm.is_some() || limits.tpm.is_some())
}

impl LeaseBook {
    pub fn new(gauge: Option<prometheus::IntGaugeVec>) -> Arc<Self> {
        Arc::new(LeaseBook {
            replica: format!("{:016x}", fastrand::u64(..)),
            scopes: RwLock::new(HashMap::new()),
            gauge,
        })
    }

    /// Admits `r` from this replica's slices if every scope it counts against has one with
    /// room; `None`: take the direct reserve (and the scopes that could be leased are
    /// noted, so the next sync leases them).
    pub fn try_admit(&self, r: &Reservation) -> Option<Snapshot> {
        if r.scopes.is_empty() || !r.scopes.iter().all(|s| lease_kind(&s.limits)) {
            return None;
        }
        let mut entries = Vec::with_capacity(r.scopes.len());
        let mut missing = false;
        {
            let scopes = self.scopes.read().ok()?;
            for s in &r.scopes {
                match scopes.get(&s.scope) {
                    Some(e) => {
                        e.demand.fetch_add(1, Ordering::Relaxed);
                        entries.push(e.clone());
                    }
                    None => missing = true,
                }
            }
        }
        if missing {
            self.note(r);
            return None;
        }
        // Locked in one order (by address), so two requests never wait on each other.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| Arc::as_ptr(&entries[i]) as usize);
        let mut guards = Vec::with_capacity(entries.len());
        for &i in &order {
            guards.push((i, entries[i].state.lock().ok()?));
        }
        guards.sort_by_key(|(i, _)| *i);
        let now = Instant::now();
        for ((_, slice), scope) in guards.iter_mut().zip(&r.scopes) {
            if slice.rpm != scope.limits.rpm || slice.tpm != scope.limits.tpm {
                // The limits changed (an admin edit): the old slice is handed back at the
                // next sync and a new one sized to the new limits.
                slice.expires = None;
                slice.rpm = scope.limits.rpm;
                slice.tpm = scope.limits.tpm;
                return None;
            }
            if !slice.usable(now, r.tokens) {
                return None;
            }
        }
        // Of all scopes, the one with the fewest requests (tokens) left: (left, limit).
        let mut requests: Option<(u64, u64)> = None;
        let mut tokens: Option<(u64, u64)> = None;
        for (_, guard) in &mut guards {
            let slice: &mut Slice = guard;
            if let Some(rpm) = slice.rpm {
                let left = take(&mut slice.requests, 1, slice.shared_requests_left, rpm);
                tightest(&mut requests, left, rpm);
            }
            if let Some(tpm) = slice.tpm {
                let left = take(&mut slice.tokens, r.tokens, slice.shared_tokens_left, tpm);
                tightest(&mut tokens, left, tpm);
            }
        }
        let mut snapshot = Snapshot::default();
        if let Some((left, limit)) = requests {
            snapshot.requests_limit = Some(limit);
            snapshot.requests_remaining = left;
            snapshot.requests_reset_ms = reset_ms(limit, left);
        }
        if let Some((left, limit)) = tokens {
            snapshot.tokens_limit = Some(limit);
            snapshot.tokens_remaining = left;
            snapshot.tokens_reset_ms = reset_ms(limit, left);
        }
        Some(snapshot)
    }

    /// Notes the scopes of a reservation that could be leased, so the next sync asks for
    /// slices of them.
    fn note(&self, r: &Reservation) {
        let Ok(mut scopes) = self.scopes.write() else {
            return;
        };
        for s in &r.scopes {
            scopes
                .entry(s.scope.clone())
                .or_insert_with(|| {
                    Arc::new(ScopeLease {
                        state: Mutex::new(Slice::new(&s.limits, r.tokens)),
                        demand: AtomicU64::new(0),
                    })
                })
                .demand
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request admitted from slices ended: its tokens are settled at the next sync.
    pub fn settle(&self, r: &Reservation, used: Usage) {
        let change = used.tokens as i64 - r.tokens as i64;
        if change == 0 {
            return;
        }
        let Ok(scopes) = self.scopes.read() else {
            return;
        };
        for s in r.scopes.iter().filter(|s| s.limits.tpm.is_some()) {
            if let Some(e) = scopes.get(&s.scope)
                && let Ok(mut slice) = e.state.lock()
            {
                slice.token_change += change;
            }
        }
    }

    /// One sync: decides every scope's ask, sends them, and applies the grants. A failed
    /// call keeps the settled token changes for the next one; slices then run out or expire
    /// and requests take the direct reserve.
    pub async fn sync(&self, source: &dyn LeaseSource, since_last: Duration) {
        let now = Instant::now();
        let entries: Vec<(String, Arc<ScopeLease>)> = match self.scopes.read() {
            Ok(scopes) => scopes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        let mut asks = Vec::new();
        let mut forget = Vec::new();
        for (scope, entry) in &entries {
            let demand = entry.demand.swap(0, Ordering::Relaxed);
            let Ok(mut slice) = entry.state.lock() else {
                continue;
            };
            if let Some(ask) = plan(scope, &mut slice, demand, since_last, now) {
                asks.push((ask, entry.clone()));
            } else if slice.idle_syncs >= FORGET_SYNCS && slice.expires.is_none() {
                forget.push(scope.clone());
            }
        }
        if !forget.is_empty()
            && let Ok(mut scopes) = self.scopes.write()
        {
            for scope in forget {
                scopes.remove(&scope);
            }
        }
        // The calls go out at once (a Cluster takes one scope per call); each chunk's
        // grants, or its failure, are its own.
        let calls = asks
            .chunks(source.max_batch().clamp(1, MAX_BATCH))
            .map(|chunk| async move {
                let sent: Vec<LeaseAsk> = chunk.iter().map(|(a, _)| a.clone()).collect();
                let asked_at = Instant::now();
                (chunk, asked_at, source.lease(&self.replica, &sent).await)
            });
        for (chunk, asked_at, granted) in futures_util::future::join_all(calls).await {
            match granted {
                Ok(grants) => {
                    for ((ask, entry), grant) in chunk.iter().zip(grants) {
                        if let Ok(mut slice) = entry.state.lock() {
                            apply(&mut slice, ask, grant, asked_at);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("leasing quota slices failed: {e}");
                    for (ask, entry) in chunk {
                        if let Ok(mut slice) = entry.state.lock() {
                            // What was handed back stays stranded; settled changes are kept.
                            slice.token_change += ask.token_change;
                        }
                    }
                }
            }
        }
        if let Some(gauge) = &self.gauge {
            let (requests, tokens) = self.held();
            gauge.with_label_values(&["requests"]).set(requests as i64);
            gauge.with_label_values(&["tokens"]).set(tokens as i64);
        }
    }

    /// Requests and tokens this replica holds in slices, summed over its scopes.
    pub fn held(&self) -> (u64, u64) {
        let Ok(scopes) = self.scopes.read() else {
            return (0, 0);
        };
        let now = Instant::now();
        scopes
            .values()
            .filter_map(|e| {
                e.state
                    .lock()
                    .ok()
                    .map(|s| (s.expires, s.requests, s.tokens))
            })
            .filter(|(expires, _, _)| expires.is_some_and(|e| now < e))
            .fold((0, 0), |(r, t), (_, sr, st)| (r + sr, t + st))
    }
}

/// Decides one scope's ask at a sync; `None` when it has nothing to ask or report.
fn plan(
    scope: &str,
    slice: &mut Slice,
    demand: u64,
    since_last: Duration,
    now: Instant,
) -> Option<LeaseAsk> {
    let per_second = demand as f64 / since_last.as_secs_f64().max(0.001);
    slice.rate = 0.5 * slice.rate + 0.5 * per_second;
    let mut ask = LeaseAsk {
        scope: scope.to_string(),
        rpm: slice.rpm,
        tpm: slice.tpm,
        want_requests: 0,
        want_tokens: 0,
        min_tokens: 0,
        return_requests: 0,
        return_tokens: 0,
        token_change: std::mem::take(&mut slice.token_change),
    };
    let expired = slice.expires.is_some_and(|e| now >= e);
    let limits_changed = slice.expires.is_none() && (slice.requests > 0 || slice.tokens > 0);
    if demand == 0 {
        slice.idle_syncs = slice.idle_syncs.saturating_add(1);
    } else {
        slice.idle_syncs = 0;
    }
    let giving_up = expired || limits_changed || slice.idle_syncs >= IDLE_SYNCS;
    if giving_up && (slice.requests > 0 || slice.tokens > 0) {
        let (requests, tokens) = slice.take_back(now);
        ask.return_requests = requests;
        ask.return_tokens = tokens;
    } else if expired {
        slice.expires = None;
    }
    let starved = slice.starved_until.is_some_and(|until| now < until);
    if demand > 0 && !starved && slice.leasable() {
        let lessees = slice.lessees.max(1);
        let horizon = HORIZON.as_secs_f64();
        let target_requests = (slice.rate * horizon).ceil().max(1.0) as u64;
        if let Some(rpm) = slice.rpm {
            let share = (rpm / (lessees * SHARE_DIVISOR)).max(1);
            let target = target_requests.min(share);
            let renew = slice.expires.is_none_or(|e| e <= now + 2 * SYNC_EVERY);
            if slice.requests < target.div_ceil(2) || renew {
                ask.want_requests = target.saturating_sub(slice.requests).max(1);
            }
        }
        if let Some(tpm) = slice.tpm {
            let share = (tpm / (lessees * SHARE_DIVISOR)).max(1);
            let per_request = slice.tokens_per_request.ceil().max(1.0) as u64;
            let target = (target_requests.saturating_mul(per_request)).min(share);
            let renew = slice.expires.is_none_or(|e| e <= now + 2 * SYNC_EVERY);
            if slice.tokens < target.div_ceil(2) || renew || ask.want_requests > 0 {
                ask.want_tokens = target.saturating_sub(slice.tokens).max(per_request);
                ask.min_tokens = per_request;
                // A grant renews the whole slice: both limits are asked for together.
                if slice.rpm.is_some() && ask.want_requests == 0 {
                    ask.want_requests = 1;
                }
            } else if ask.want_requests > 0 {
                ask.want_tokens = per_request;
                ask.min_tokens = per_request;
            }
        }
    }
    let anything = ask.want_requests > 0
        || ask.want_tokens > 0
        || ask.return_requests > 0
        || ask.return_tokens > 0
        || ask.token_change != 0;
    anything.then_some(ask)
}

/// Applies a grant to the slice it was asked for.
fn apply(slice: &mut Slice, ask: &LeaseAsk, grant: LeaseGrant, asked_at: Instant) {
    slice.shared_requests_left = grant.requests_left;
    slice.shared_tokens_left = grant.tokens_left;
    slice.lessees = grant.lessees;
    let wanted = ask.want_requests > 0 || ask.want_tokens > 0;
    if grant.requests > 0 || grant.tokens > 0 {
        slice.requests += grant.requests;
        slice.tokens += grant.tokens;
        slice.granted_at = Some(asked_at);
        slice.granted_requests = grant.requests;
        slice.granted_tokens = grant.tokens;
        // Counted from when the grant was asked for: Redis keeps the lessee longer.
        slice.expires = Some(asked_at + LEASE_TTL);
        slice.starved_until = None;
    } else if wanted {
        // The bucket is nearly empty: per-request reserves decide exactly until it refills.
        slice.starved_until = Some(asked_at + STARVED_FOR);
    }
}

/// Takes `amount` from what a slice has `left`; answers the estimate of what the scope has
/// left: the bucket at the last sync plus the slice.
fn take(left: &mut u64, amount: u64, shared: Option<u64>, limit: u64) -> u64 {
    *left -= amount;
    shared.unwrap_or(0).saturating_add(*left).min(limit)
}

fn tightest(so_far: &mut Option<(u64, u64)>, left: u64, limit: u64) {
    if so_far.is_none_or(|(l, _)| left < l) {
        *so_far = Some((left, limit));
    }
}

/// When a bucket with `left` of `limit` is full again.
fn reset_ms(limit: u64, left: u64) -> u64 {
    let used = limit.saturating_sub(left) as u128;
    (used * WINDOW.as_millis() / u128::from(limit.max(1))) as u64
}

/// Runs [`LeaseBook::sync`] every [`SYNC_EVERY`] on `runtime`, for as long as the book is
/// in use.
pub fn start_sync(
    book: &Arc<LeaseBook>,
    source: Arc<dyn LeaseSource>,
    runtime: &tokio::runtime::Handle,
) {
    let book = Arc::downgrade(book);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tick.tick().await;
            let Some(book) = book.upgrade() else {
                return;
            };
            let now = Instant::now();
            book.sync(source.as_ref(), now - last).await;
            last = now;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Owner, Scoped};

    /// A shared bucket per scope, as lease.lua keeps it (no drain: tests run in a moment).
    #[derive(Default)]
    struct Buckets {
        levels: Mutex<HashMap<String, (f64, f64)>>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl LeaseSource for Buckets {
        async fn lease(
            &self,
            _replica: &str,
            asks: &[LeaseAsk],
        ) -> Result<Vec<LeaseGrant>, QuotaError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut levels = self.levels.lock().unwrap();
            Ok(asks
                .iter()
                .map(|a| {
                    let (rl, tl) = levels.entry(a.scope.clone()).or_default();
                    *rl = (*rl - a.return_requests as f64).max(0.0);
                    *tl = (*tl + a.token_change as f64 - a.return_tokens as f64).max(0.0);
                    let room = |limit: Option<u64>, level: f64| {
                        limit.map_or(0, |l| (l as f64 - level).max(0.0) as u64)
                    };
                    let mut r = a.want_requests.min(room(a.rpm, *rl));
                    let mut t = a.want_tokens.min(room(a.tpm, *tl));
                    if (a.rpm.is_some() && r < 1) || (a.tpm.is_some() && t < a.min_tokens.max(1)) {
                        (r, t) = (0, 0);
                    }
                    *rl += r as f64;
                    *tl += t as f64;
                    LeaseGrant {
                        requests: r,
                        tokens: t,
                        requests_left: a.rpm.map(|l| room(Some(l), *rl)),
                        tokens_left: a.tpm.map(|l| room(Some(l), *tl)),
                        lessees: 1,
                    }
                })
                .collect())
        }
    }

    fn reservation(rpm: Option<u64>, tpm: Option<u64>, tokens: u64) -> Reservation {
        Reservation {
            id: format!("r{}", fastrand::u32(..)),
            now_ms: 0,
            scopes: vec![Scoped {
                scope: "k:1".into(),
                limits: Limits {
                    rpm,
                    tpm,
                    ..Limits::default()
                },
                owner: Owner::Key(1),
            }],
            tokens,
            cost: 0,
            lease_ms: 1000,
        }
    }

    #[tokio::test]
    async fn admits_locally_only_what_was_leased_first() {
        let book = LeaseBook::new(None);
        let buckets = Buckets::default();
        let r = reservation(Some(6_000), None, 10);
        // No slice yet: the first requests take the direct reserve and ask for one.
        assert!(book.try_admit(&r).is_none());
        for _ in 0..99 {
            assert!(book.try_admit(&r).is_none());
        }
        book.sync(&buckets, Duration::from_millis(50)).await;
        let mut local = 0;
        while book.try_admit(&r).is_some() {
            local += 1;
        }
        let leased = buckets.levels.lock().unwrap()["k:1"].0 as u64;
        assert!(local > 0, "nothing was leased");
        assert_eq!(local, leased, "admitted locally what the bucket counted");
        // Never more than a share of the limit per replica.
        assert!(leased <= 6_000 / (2 * SHARE_DIVISOR), "{leased}");
    }

    #[tokio::test]
    async fn small_limits_and_slots_are_never_leased() {
        let book = LeaseBook::new(None);
        let buckets = Buckets::default();
        let small = reservation(Some(20), None, 10);
        let mut slots = reservation(Some(100_000), None, 10);
        slots.scopes[0].scope = "k:2".into();
        slots.scopes[0].limits.concurrency = Some(5);
        for _ in 0..50 {
            assert!(book.try_admit(&small).is_none());
            assert!(book.try_admit(&slots).is_none());
            book.sync(&buckets, Duration::from_millis(50)).await;
        }
        assert!(buckets.levels.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_bucket_grants_nothing_and_tokens_settle_at_the_next_sync() {
        let book = LeaseBook::new(None);
        let buckets = Buckets::default();
        let r = reservation(Some(1_000), Some(1_000_000), 100);
        for _ in 0..10_000 {
            if book.try_admit(&r).is_none() {
                book.sync(&buckets, Duration::from_millis(50)).await;
            }
        }
        let (rl, _) = buckets.levels.lock().unwrap()["k:1"];
        assert_eq!(rl, 1_000.0, "the bucket is full: every request was leased");
        // A request that used fewer tokens than reserved gives the difference back.
        let (_, before) = buckets.levels.lock().unwrap()["k:1"];
        book.settle(
            &r,
            Usage {
                tokens: 40,
                cost: 0,
            },
        );
        book.sync(&buckets, Duration::from_millis(50)).await;
        let (_, after) = buckets.levels.lock().unwrap()["k:1"];
        assert_eq!(after, before - 60.0);
    }

    #[tokio::test]
    async fn an_idle_scope_returns_its_slice_less_what_drained() {
        let mut slice = Slice::new(
            &Limits {
                rpm: Some(6_000),
                ..Limits::default()
            },
            1,
        );
        let start = Instant::now();
        slice.requests = 300;
        slice.granted_requests = 200;
        slice.granted_at = Some(start);
        slice.expires = Some(start + LEASE_TTL);
        // 0.5 s at 100 a second drained 50 of the last grant's 200.
        let (requests, _) = slice.take_back(start + Duration::from_millis(500));
        assert_eq!(requests, 150);
        assert_eq!(slice.requests, 0);
        assert!(slice.expires.is_none());
    }

    #[test]
    fn reset_is_when_the_bucket_drains() {
        assert_eq!(reset_ms(6_000, 6_000), 0);
        assert_eq!(reset_ms(6_000, 3_000), 30_000);
    }
}
