//! Quotas: requests per minute, tokens per minute, concurrent requests and spend budgets,
//! checked and reserved in one atomic step before a request is proxied and settled to the
//! real usage afterwards. Two stores with the same semantics: Redis (shared by every
//! replica, one Lua script per step) and an in-process store for the embedded mode.

pub mod headers;
pub mod holds;
pub mod leases;
pub mod limiter;
pub mod scopes;

mod memory;
mod redis_batch;
mod redis_clock;
mod redis_recovery;
mod redis_store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, TimeZone, Utc};

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// The per-minute limits drain over this window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Which limit refused a request; its `code` is the OpenAI error code sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
    Concurrency,
    Budget,
}

impl Dimension {
    pub fn code(self) -> &'static str {
        match self {
            Dimension::Requests => "rate_limit_requests",
            Dimension::Tokens => "rate_limit_tokens",
            Dimension::Concurrency => "concurrency_limit",
            Dimension::Budget => "budget_exceeded",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "rate_limit_requests" => Dimension::Requests,
            "rate_limit_tokens" => Dimension::Tokens,
            "concurrency_limit" => Dimension::Concurrency,
            "budget_exceeded" => Dimension::Budget,
            _ => return None,
        })
    }
}

/// A budget period; each resets at a UTC boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// 00:00 UTC every day.
    Day,
    /// 00:00 UTC on the first of each month.
    Month,
    /// Never.
    Total,
}

impl Period {
    /// The id of the period containing `now` (part of the spend counter's name).
    pub fn id(self, now: DateTime<Utc>) -> String {
        match self {
            Period::Day => now.format("d%Y-%m-%d").to_string(),
            Period::Month => now.format("m%Y-%m").to_string(),
            Period::Total => "total".to_string(),
        }
    }

    /// When the period containing `now` began; `None` for `Total`.
    pub fn started_at(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let day = now.date_naive();
        let start = match self {
            Period::Day => day,
            Period::Month => day.with_day(1)?,
            Period::Total => return None,
        };
        Some(Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0)?))
    }

    /// When the period containing `now` ends; `None` for `Total`.
    pub fn resets_at(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let day = now.date_naive();
        let next = match self {
            Period::Day => day.succ_opt()?,
            Period::Month => {
                let (y, m) = if day.month() == 12 {
                    (day.year() + 1, 1)
                } else {
                    (day.year(), day.month() + 1)
                };
                chrono::NaiveDate::from_ymd_opt(y, m, 1)?
            }
            Period::Total => return None,
        };
        Some(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?))
    }
}

/// A spend budget in micro-USD for the current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub limit_micro_usd: i64,
    pub period: Period,
    pub period_id: String,
    /// Milliseconds until the period resets (0 for `Total`).
    pub resets_in_ms: u64,
    /// How long the spend counter is kept (0: forever).
    pub ttl_secs: u64,
}

impl Budget {
    pub fn new(limit_micro_usd: i64, period: Period, now: DateTime<Utc>) -> Self {
        let resets_in_ms = period
            .resets_at(now)
            .map_or(0, |at| (at - now).num_milliseconds().max(0) as u64);
        Budget {
            // A negative budget allows nothing, in both stores (the Redis script reads a
            // negative limit as "no budget").
            limit_micro_usd: limit_micro_usd.max(0),
            period,
            period_id: period.id(now),
            resets_in_ms,
            // A day past the period's end, so a late settlement still finds its counter.
            ttl_secs: if resets_in_ms == 0 {
                0
            } else {
                resets_in_ms / 1000 + 86_400
            },
        }
    }
}

/// The limits of one scope (a key, later also its user and team); `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
    pub budget: Option<Budget>,
}

impl Limits {
    /// Whether a request holds a lease in this scope (for its slot or its budget hold).
    pub fn leased(&self) -> bool {
        self.concurrency.is_some() || self.budget.is_some()
    }

    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.concurrency.is_none()
            && self.budget.is_none()
    }
}

/// One scope a request counts against: its key (`k:…`), its user (`u:…`) or its team
/// (`t:…`), with that scope's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scoped {
    pub scope: String,
    pub limits: Limits,
    /// Whose usage events hold this scope's spend, to rebuild a lost spend counter.
    pub owner: Owner,
}

/// The owner of a scope, as usage events record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Key(i64),
    User(i64),
    Team(i64),
    /// An upstream deployment (no budget).
    Deployment,
}

impl Owner {
    /// Whose limit this is, in one word (logs).
    pub fn label(self) -> &'static str {
        match self {
            Owner::Key(_) => "key",
            Owner::User(_) => "user",
            Owner::Team(_) => "team",
            Owner::Deployment => "deployment",
        }
    }

    /// Whose limit this is, as a refusal's message names it.
    pub fn described(self) -> &'static str {
        match self {
            Owner::Key(_) => "this API key",
            Owner::User(_) => "your user account",
            Owner::Team(_) => "your team",
            Owner::Deployment => "the upstream deployments of this model",
        }
    }
}

/// One request's claim on every scope it counts against; all are checked and reserved
/// together, atomically.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Unique per request.
    pub id: String,
    pub now_ms: u64,
    pub scopes: Vec<Scoped>,
    /// Estimated tokens: prompt estimate plus the completion allowance.
    pub tokens: u64,
    /// Estimated maximum cost, micro-USD.
    pub cost: i64,
    /// How long a concurrency slot is held if never released (a crashed replica).
    pub lease_ms: u64,
}

/// Rate-limit state after a decision, for the `x-ratelimit-*` headers: of all scopes, the
/// one with the fewest requests (tokens) left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests_limit: Option<u64>,
    pub requests_remaining: u64,
    pub requests_reset_ms: u64,
    pub tokens_limit: Option<u64>,
    pub tokens_remaining: u64,
    pub tokens_reset_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(Snapshot),
    /// The spend counter of this scope's budget period does not exist (a new period, or
    /// the store lost it): seed it from the usage events, then ask again. Nothing was
    /// reserved.
    Unseeded(usize),
    Rejected {
        dimension: Dimension,
        /// Index into the reservation's scopes.
        scope: usize,
        /// `None` when waiting cannot help (a request larger than the whole token limit).
        retry_after_ms: Option<u64>,
        snapshot: Snapshot,
    },
}

/// What a request really used, to settle its reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub tokens: u64,
    pub cost: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QuotaError {
    /// The call did not reach the store: nothing was applied.
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
    /// The call was sent but its answer did not come in time: it may have been applied (or
    /// still be, late).
    #[error("quota store did not answer: {0}")]
    Unanswered(String),
}

impl QuotaError {
    /// Whether the call may have been applied although it failed.
    pub fn maybe_applied(&self) -> bool {
        matches!(self, QuotaError::Unanswered(_))
    }
}

#[async_trait]
pub trait QuotaStore: Send + Sync {
    async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError>;
    async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError>;
    /// Sets a scope's spend counter for its budget period, unless it exists by now.
    async fn seed_spend(&self, scope: &Scoped, micro_usd: i64) -> Result<(), QuotaError>;
    /// Drops a scope's spend counter, so that it is rebuilt from usage events.
    async fn forget_spend(&self, scope: &Scoped) -> Result<(), QuotaError>;
    /// A reservation the gateway gave up on when the store failed: served under the local
    /// limiter (`Some`: what it used) or refused (`None`). The store makes it count as what
    /// happened once it answers again: its slots freed, its requests and tokens counted if
    /// served and not otherwise, whether or not the failed reserve was applied.
    fn abandoned(&self, _r: &Reservation, _served: Option<Usage>) {}
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One scope's state in a decision: requests and tokens left (`None`: no such limit) and
/// when they reset.
#[derive(Debug, Clone, Copy, Default)]
struct ScopeState {
    requests_left: Option<u64>,
    requests_reset_ms: u64,
    tokens_left: Option<u64>,
    tokens_reset_ms: u64,
}

/// Builds a decision from the store's answer (shared by both stores, so they agree).
fn decision(
    r: &Reservation,
    allowed: bool,
    dimension: &str,
    retry_ms: i64,
    scope: usize,
    states: &[ScopeState],
) -> Decision {
    let mut snapshot = Snapshot::default();
    let tightest = |pick: fn(&ScopeState) -> Option<u64>| {
        states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| pick(s).map(|left| (left, i)))
            .min()
    };
    if let Some((left, i)) = tightest(|s| s.requests_left) {
        snapshot.requests_limit = r.scopes[i].limits.rpm;
        snapshot.requests_remaining = left;
        snapshot.requests_reset_ms = states[i].requests_reset_ms;
    }
    if let Some((left, i)) = tightest(|s| s.tokens_left) {
        snapshot.tokens_limit = r.scopes[i].limits.tpm;
        snapshot.tokens_remaining = left;
        snapshot.tokens_reset_ms = states[i].tokens_reset_ms;
    }
    if dimension == "unseeded" {
        return Decision::Unseeded(scope);
    }
    match (allowed, Dimension::from_code(dimension)) {
        (false, Some(dimension)) => Decision::Rejected {
            dimension,
            scope,
            retry_after_ms: u64::try_from(retry_ms).ok(),
            snapshot,
        },
        _ => Decision::Allowed(snapshot),
    }
}
