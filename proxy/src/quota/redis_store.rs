//! The Redis quota store: one Lua script reserves (checking every limit first), one
//! settles. Scripts are loaded once and called by SHA (reloaded if Redis lost them). All
//! keys of a scope share a hash tag. With one Redis, one call spans a request's scopes
//! (key, user, team, deployment) and reserves in all or none. A Redis Cluster runs a script
//! on one hash slot only: there a reservation is taken one scope at a time, in a fixed
//! order, and a refusal takes back the steps before it (until then they count, which can
//! only refuse another request, never admit one too many).
//! Both steps are batched (see `redis_batch`). A third script leases slices of large limits
//! to the replica (see `leases`).

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicU64, Ordering},
};

use crate::backend::redis::{COMMAND_TIMEOUT, another_connection};
use async_trait::async_trait;
use fred::{
    clients::Client,
    interfaces::{ClientLike, KeysInterface},
    types::{Expiration, SetOptions, Value, scripts::Script},
};

use crate::metrics::shared;

use super::{
    Decision, QuotaError, QuotaStore, Reservation, ScopeState, Scoped, Usage, WINDOW, decision,
    leases::{LEASE_TTL, LeaseAsk, LeaseGrant, LeaseSource},
    now_ms,
    redis_batch::{Pending, Settler, queue_near, unavailable},
    redis_clock::ClockOffset,
    redis_recovery::{self, Lost, Recovery},
};

const RESERVE: &str = include_str!("reserve.lua");
const LEASE: &str = include_str!("lease.lua");
/// The lease script with its SHA-1, hashed once: hashing its text costs more than the call
/// that sends it.
static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(LEASE));
pub(super) const SETTLE: &str = include_str!("settle.lua");

/// How long a settlement's marker is kept (see settle.lua).
const SETTLED_MARKER_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Tells stores apart (tests run several in one process).
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);
/// Tells apart the give-backs of a reservation's steps (see `Lost::Reserve`).
static NEXT_GIVE_BACK: AtomicU64 = AtomicU64::new(1);

pub struct RedisStore {
    id: u64,
    client: Client,
    /// Prefix of every key, so tests (or tenants) can share one Redis.
    prefix: String,
    settler: Settler,
    /// How far Redis's clock is ahead of ours, to give reservations a deadline on it.
    clock: ClockOffset,
    /// Reservations and settlements left to put right once Redis answers again.
    recovery: Arc<Recovery>,
    /// A Redis Cluster: scripts touch one scope (hash slot) per call.
    clustered: bool,
}

impl RedisStore {
    /// Settlements get a connection of their own, and their batching task, on `runtime`;
    /// so does the task that puts right what a stall left behind.
    pub fn new(client: Client, prefix: &str, runtime: &tokio::runtime::Handle) -> Self {
        RedisStore {
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            settler: Settler::start(
                another_connection(&client, runtime),
                runtime.clone(),
                SETTLE,
            ),
            recovery: Recovery::start(another_connection(&client, runtime), prefix, runtime),
            clustered: client.is_clustered(),
            client,
            prefix: prefix.to_string(),
            clock: ClockOffset::default(),
        }
    }

    /// A reservation as the steps a Cluster takes it in: one per scope, the same request.
    fn steps(r: &Reservation) -> Vec<Reservation> {
        r.scopes
            .iter()
            .map(|scope| Reservation {
                id: r.id.clone(),
                now_ms: r.now_ms,
                scopes: vec![scope.clone()],
                tokens: r.tokens,
                cost: r.cost,
                lease_ms: r.lease_ms,
            })
            .collect()
    }

    /// Takes a reservation scope by scope (a Cluster): the first refusal (or missing spend
    /// counter) ends it, and the steps taken before it are given back before the answer
    /// (so that a second attempt of the same request, after a spend counter is rebuilt,
    /// finds them gone). A step that fails gives back those before it and fails the whole;
    /// the caller gives it up, and `abandoned` puts right the step that failed.
    async fn reserve_stepwise(&self, r: &Reservation) -> Result<Decision, QuotaError> {
        let steps = Self::steps(r);
        let mut states = vec![ScopeState::default(); steps.len()];
        for (i, step) in steps.iter().enumerate() {
            let answer = match self.reserve_one(step).await {
                Ok(answer) => answer,
                Err(e) => {
                    self.give_back(&steps[..i]).await;
                    return Err(e);
                }
            };
            if let Some(&state) = answer.states.first() {
                states[i] = state;
            }
            if !answer.allowed {
                let given_back = self.give_back(&steps[..i]).await;
                if !given_back && answer.dimension == "unseeded" {
                    // Asked again at once, it could land before what it would replace.
                    return Err(QuotaError::Unavailable(
                        "the quota steps taken before a missing spend counter could not be \
                         given back"
                            .into(),
                    ));
                }
                return Ok(decision(
                    r,
                    false,
                    answer.dimension,
                    answer.retry_ms,
                    i,
                    &states,
                ));
            }
        }
        Ok(decision(r, true, "", 0, 0, &states))
    }

    /// Gives back steps a Cluster applied; whether all went through now (the others are
    /// left to the recovery task).
    async fn give_back(&self, taken: &[Reservation]) -> bool {
        if taken.is_empty() {
            return true;
        }
        let tag = NEXT_GIVE_BACK.fetch_add(1, Ordering::Relaxed);
        let steps = taken
            .iter()
            .map(|step| Lost::Reserve {
                r: step.clone(),
                served: None,
                not_before: 0.0,
                given_back: tag,
            })
            .collect();
        let left = redis_recovery::give_back(&self.client, &self.prefix, steps).await;
        let all = left.is_empty();
        for lost in left {
            self.recovery.push(lost);
        }
        all
    }

    /// Queues a reservation on the calling thread's reserve batches.
    fn queue_near(&self, pending: Pending) -> bool {
        queue_near(self.id, &self.client, RESERVE, pending)
    }

    /// reserve.lua's keys: the reservation's "landed" marker, then its scopes'.
    fn reserve_keys(&self, r: &Reservation) -> Vec<String> {
        let mut keys = Vec::with_capacity(1 + r.scopes.len() * 3);
        keys.push(landed_key(&self.prefix, r));
        scope_keys(&self.prefix, r, &mut keys);
        keys
    }

    fn spend_key(&self, scope: &Scoped) -> Option<String> {
        let budget = scope.limits.budget.as_ref()?;
        Some(format!(
            "{}:q:{{{}}}:spend:{}",
            self.prefix, scope.scope, budget.period_id
        ))
    }
}

/// reserve.lua's answer for one reservation.
struct Answer {
    allowed: bool,
    dimension: &'static str,
    retry_ms: i64,
    /// Index into the reservation's scopes.
    scope: usize,
    states: Vec<ScopeState>,
}

impl RedisStore {
    async fn reserve_one(&self, r: &Reservation) -> Result<Answer, QuotaError> {
        // The caller gives up COMMAND_TIMEOUT from now; Redis refuses the reservation if it
        // arrives later than that (by its clock, which the offset can only put later).
        let queued = now_ms();
        let deadline = self.clock.ahead_ms().map_or(0.0, |ahead| {
            (queued + COMMAND_TIMEOUT.as_millis() as u64) as f64 + ahead
        });
        // Reserved this close to the deadline, the caller may have given up already (the
        // deadline errs late by the offset's error): the reservation leaves a marker.
        let mark_after = if deadline > 0.0 {
            deadline - (COMMAND_TIMEOUT.as_millis() / 2) as f64
        } else {
            0.0
        };
        let mut numbers = Packed::with_capacity(8 + 5 * r.scopes.len());
        numbers.extend([
            r.now_ms as f64,
            WINDOW.as_millis() as f64,
            r.tokens as f64,
            r.cost as f64,
            r.lease_ms as f64,
            r.scopes.len() as f64,
            deadline,
            mark_after,
        ]);
        for s in &r.scopes {
            let l = &s.limits;
            let budget = l.budget.as_ref();
            numbers.extend([
                l.rpm.unwrap_or(0) as f64,
                l.tpm.unwrap_or(0) as f64,
                l.concurrency.unwrap_or(0) as f64,
                budget.map_or(-1.0, |b| b.limit_micro_usd as f64),
                budget.map_or(0.0, |b| b.resets_in_ms as f64),
            ]);
        }
        let lease_ms = r.lease_ms.max(1);
        let [with_cost, without] = lease_members(r);
        let args = vec![
            numbers.into_value(),
            with_cost.into(),
            without.into(),
            r.now_ms.saturating_add(lease_ms).to_string().into(),
            state_ttl_ms(lease_ms).to_string().into(),
            (2 * lease_ms).to_string().into(),
        ];
        let reply = Pending::call(|p| self.queue_near(p), self.reserve_keys(r), args).await?;
        let reply = unpacked(&reply, 5 + 4 * r.scopes.len())?;
        if let Some(&clock) = reply.last() {
            self.clock.observe(clock - queued as f64);
        }
        let states: Vec<ScopeState> = reply[4..reply.len() - 1]
            .chunks_exact(4)
            .map(|s| ScopeState {
                requests_left: (s[0] >= 0.0).then_some(s[0] as u64),
                requests_reset_ms: s[1].max(0.0) as u64,
                tokens_left: (s[2] >= 0.0).then_some(s[2] as u64),
                tokens_reset_ms: s[3].max(0.0) as u64,
            })
            .collect();
        let dimension = DIMENSIONS.get(reply[1] as usize).copied().unwrap_or("");
        if dimension == "late" {
            return Err(QuotaError::Unavailable(
                "the reservation reached Redis after its deadline".into(),
            ));
        }
        Ok(Answer {
            allowed: reply[0] == 1.0,
            dimension,
            retry_ms: reply[2] as i64,
            scope: (reply[3] as usize).saturating_sub(1),
            states,
        })
    }
}

#[async_trait]
impl QuotaStore for RedisStore {
    async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError> {
        if self.clustered && r.scopes.len() > 1 {
            return self.reserve_stepwise(r).await;
        }
        let a = self.reserve_one(r).await?;
        Ok(decision(
            r,
            a.allowed,
            a.dimension,
            a.retry_ms,
            a.scope,
            &a.states,
        ))
    }

    async fn seed_spend(&self, scope: &Scoped, micro_usd: i64) -> Result<(), QuotaError> {
        let (Some(budget), Some(key)) = (&scope.limits.budget, self.spend_key(scope)) else {
            return Ok(());
        };
        let expire = (budget.ttl_secs > 0).then_some(Expiration::EX(budget.ttl_secs as i64));
        let _: Value = self
            .client
            .set(key, micro_usd, expire, Some(SetOptions::NX), false)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget_spend(&self, scope: &Scoped) -> Result<(), QuotaError> {
        if let Some(key) = self.spend_key(scope) {
            let _: Value = self.client.del(key).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
        if self.clustered && r.scopes.len() > 1 {
            let steps = Self::steps(r);
            let settled = futures_util::future::join_all(
                steps.iter().map(|step| self.settle_one(step, used)),
            )
            .await;
            return settled.into_iter().collect();
        }
        self.settle_one(r, used).await
    }

    fn abandoned(&self, r: &Reservation, served: Option<Usage>) {
        // Every reserve of `r` was queued before now, so its deadline is at most now plus
        // the clock offset (without one, reserves had no deadline: wait a while).
        let not_before = match self.clock.ahead_ms() {
            Some(ahead) => now_ms() as f64 + ahead,
            None => (now_ms() + 2_000) as f64,
        };
        if r.scopes.is_empty() {
            return;
        }
        let steps = if self.clustered && r.scopes.len() > 1 {
            Self::steps(r)
        } else {
            vec![r.clone()]
        };
        for step in steps {
            self.recovery.push(Lost::Reserve {
                r: step,
                served,
                not_before,
                given_back: 0,
            });
        }
    }
}

impl RedisStore {
    async fn settle_one(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
        let args = settle_args(r, used, false);
        let settled = Pending::call(
            |p| self.settler.queue(p),
            settle_keys(&self.prefix, r),
            args,
        )
        .await;
        if let Err(e) = &settled {
            // Retried once Redis answers: a settlement never lost leaves no slot taken.
            self.recovery.push(Lost::Settle {
                r: r.clone(),
                used,
                gated: e.maybe_applied(),
            });
        }
        settled.map(|_| ())
    }
}

#[async_trait]
impl LeaseSource for RedisStore {
    /// A Cluster runs a script on one hash slot: one scope per call.
    fn max_batch(&self) -> usize {
        if self.clustered { 1 } else { usize::MAX }
    }

    async fn lease(&self, replica: &str, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, QuotaError> {
        let mut keys = Vec::with_capacity(2 * asks.len());
        let mut numbers = Packed::with_capacity(4 + 7 * asks.len());
        numbers.extend([
            now_ms() as f64,
            WINDOW.as_millis() as f64,
            // Redis keeps a lessee twice as long as the replica uses its slice.
            (2 * LEASE_TTL.as_millis()) as f64,
            // Leased scopes hold no slots: the levels need only outlive their drain.
            (2 * WINDOW.as_millis()) as f64,
        ]);
        for a in asks {
            let base = format!("{}:q:{{{}}}", self.prefix, a.scope);
            keys.push(format!("{base}:levels"));
            keys.push(format!("{base}:lessees"));
            numbers.extend([
                a.rpm.unwrap_or(0) as f64,
                a.tpm.unwrap_or(0) as f64,
                a.want_requests as f64,
                a.want_tokens as f64,
                a.min_tokens as f64,
                a.return_requests as f64,
                a.token_change as f64 - a.return_tokens as f64,
            ]);
        }
        let args: Vec<Value> = vec![
            (asks.len() as i64).into(),
            replica.into(),
            numbers.into_value(),
        ];
        let reply: Value = shared::redis(
            "lease",
            LEASE_SCRIPT.evalsha_with_reload::<Value, _, _>(&self.client, keys, args),
        )
        .await
        .map_err(|e| QuotaError::Unanswered(e.to_string()))?;
        let numbers = unpacked(&reply, 5 * asks.len())?;
        let left = |n: f64| (n >= 0.0).then_some(n as u64);
        Ok(numbers
            .chunks_exact(5)
            .map(|g| LeaseGrant {
                requests: g[0] as u64,
                tokens: g[1] as u64,
                requests_left: left(g[2]),
                tokens_left: left(g[3]),
                lessees: g[4] as u64,
            })
            .collect())
    }
}

/// The marker reserve.lua leaves when it reserves close to the reservation's deadline. In
/// the hash slot of the reservation's first scope, as a script's keys must be in a Cluster.
pub(super) fn landed_key(prefix: &str, r: &Reservation) -> String {
    marker_key(prefix, r, "landed")
}

/// settle.lua's keys: the reservation's "settled" marker, then its scopes'.
pub(super) fn settle_keys(prefix: &str, r: &Reservation) -> Vec<String> {
    let mut keys = Vec::with_capacity(1 + r.scopes.len() * 3);
    keys.push(marker_key(prefix, r, "settled"));
    scope_keys(prefix, r, &mut keys);
    keys
}

/// The marker release.lua leaves so that a reservation (or one give-back of its steps,
/// `tag`) is put right once.
pub(super) fn released_key(prefix: &str, r: &Reservation, tag: u64) -> String {
    let key = marker_key(prefix, r, "released");
    if tag == 0 {
        key
    } else {
        format!("{key}:{tag}")
    }
}

fn marker_key(prefix: &str, r: &Reservation, what: &str) -> String {
    // Without a scope (nothing was reserved), any one slot: the reservation's.
    let slot = r.scopes.first().map_or(r.id.as_str(), |s| s.scope.as_str());
    format!("{prefix}:q:{{{slot}}}:{what}:{}", r.id)
}

/// The keys of a reservation's scopes, three per scope in the scripts' order.
pub(super) fn scope_keys(prefix: &str, r: &Reservation, keys: &mut Vec<String>) {
    for s in &r.scopes {
        let base = format!("{prefix}:q:{{{}}}", s.scope);
        let period = s
            .limits
            .budget
            .as_ref()
            .map_or("none", |b| b.period_id.as_str());
        // New names: earlier versions kept a hash under `:state` (which GET cannot read)
        // and counted `:leases` in it; the two must not mix during an upgrade.
        keys.push(format!("{base}:levels"));
        keys.push(format!("{base}:running"));
        keys.push(format!("{base}:spend:{period}"));
    }
}

/// A scope's state outlives the leases it counts and the window it drains over.
fn state_ttl_ms(lease_ms: u64) -> u64 {
    WINDOW.as_millis() as u64 + 2 * lease_ms
}

/// settle.lua's arguments for one reservation; `gated`: a retry that may have been applied.
pub(super) fn settle_args(r: &Reservation, used: Usage, gated: bool) -> Vec<Value> {
    let mut numbers = Packed::with_capacity(6 + 3 * r.scopes.len());
    numbers.extend([
        r.tokens as f64,
        used.tokens as f64,
        r.cost as f64,
        r.scopes.len() as f64,
        f64::from(u8::from(gated)),
        // The marker outlives the retries of a long outage.
        SETTLED_MARKER_TTL.as_millis() as f64,
    ]);
    for s in &r.scopes {
        let l = &s.limits;
        numbers.extend(
            [l.tpm.is_some(), l.leased(), l.budget.is_some()].map(|on| f64::from(u8::from(on))),
        );
    }
    let [with_cost, without] = lease_members(r);
    vec![
        numbers.into_value(),
        with_cost.into(),
        without.into(),
        used.cost.to_string().into(),
    ]
}

/// release.lua's arguments for one reservation given up on, to apply once Redis's clock has
/// passed `not_before`.
pub(super) fn release_args(
    r: &Reservation,
    served: Option<Usage>,
    not_before: f64,
    applied: bool,
) -> Vec<Value> {
    let lease_ms = r.lease_ms.max(1);
    let used = served.unwrap_or_default();
    let mut numbers = Packed::with_capacity(10 + 4 * r.scopes.len());
    numbers.extend([
        r.tokens as f64,
        used.tokens as f64,
        r.cost as f64,
        r.scopes.len() as f64,
        f64::from(u8::from(served.is_some())),
        now_ms() as f64,
        state_ttl_ms(lease_ms) as f64,
        // The marker outlives any retry of the same release.
        (2 * WINDOW.as_millis()) as f64,
        not_before,
        f64::from(u8::from(applied)),
    ]);
    for s in &r.scopes {
        let l = &s.limits;
        numbers.extend(
            [
                l.rpm.is_some(),
                l.tpm.is_some(),
                l.leased(),
                l.budget.is_some(),
            ]
            .map(|on| f64::from(u8::from(on))),
        );
    }
    let [with_cost, without] = lease_members(r);
    vec![numbers.into_value(), with_cost.into(), without.into()]
}

/// A reservation's lease members: with the cost it holds (in scopes with a budget) and
/// without; settle removes the one reserve wrote.
fn lease_members(r: &Reservation) -> [String; 2] {
    [format!("{}:{}", r.id, r.cost), format!("{}:0", r.id)]
}

/// The scripts' numbers travel as little-endian doubles: Redis is spared converting text
/// to numbers and back, a large part of a script's time when it runs cold. Every number
/// sent (ms, tokens, micro-USD) is an integer far below 2^53, so each is exact.
struct Packed(Vec<u8>);

impl Packed {
    fn with_capacity(numbers: usize) -> Self {
        Packed(Vec::with_capacity(numbers * 8))
    }

    fn extend(&mut self, numbers: impl IntoIterator<Item = f64>) {
        for n in numbers {
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn into_value(self) -> Value {
        Value::Bytes(self.0.into())
    }
}

/// A reply of `count` packed doubles.
fn unpacked(reply: &Value, count: usize) -> Result<Vec<f64>, QuotaError> {
    let bytes = reply.as_bytes().unwrap_or_default();
    if bytes.len() != count * 8 {
        return Err(QuotaError::Unavailable(format!(
            "the quota script answered {} bytes, not {count} numbers",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect())
}

/// The refusals' codes as reserve.lua numbers them (0: none).
const DIMENSIONS: [&str; 7] = [
    "",
    "rate_limit_requests",
    "rate_limit_tokens",
    "concurrency_limit",
    "budget_exceeded",
    "unseeded",
    "late",
];
