//! The in-process quota store of the embedded mode: the same leaky buckets, leases and
//! checks as the Redis script, under one lock (every step is short and never awaits).

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;

use super::{
    Decision, QuotaError, QuotaStore, Reservation, ScopeState, Scoped, Usage, WINDOW, decision,
};

const WINDOW_MS: f64 = WINDOW.as_millis() as f64;

#[derive(Default)]
struct Scope {
    /// Request and token levels as of `ts` (ms).
    requests: f64,
    tokens: f64,
    ts: u64,
    /// reservation id → (cost held against the budget, lease expiry ms).
    leases: HashMap<String, (i64, u64)>,
}

impl Scope {
    /// The cost held by the running requests.
    fn held(&self) -> i64 {
        self.leases.values().map(|(cost, _)| *cost).sum()
    }
}

#[derive(Default)]
struct State {
    scopes: HashMap<String, Scope>,
    /// (scope, period id) → micro-USD spent (settled).
    spend: HashMap<(String, String), i64>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (the fallback store, once the shared store is back).
    pub fn clear(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::default();
        }
    }
}

/// A level drained to `now` at `limit` per window; a clock behind the last writer's drains
/// nothing.
fn drained(level: f64, since: u64, now: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 0.0;
    }
    (level - now.saturating_sub(since) as f64 * limit as f64 / WINDOW_MS).max(0.0)
}

/// Levels are fractions: a hair of float error must not turn a fit into a refusal, nor a
/// whole millisecond into two (the Redis script uses the same margins).
const EPS: f64 = 1e-9;
const EPS_MS: f64 = 1e-6;

fn over(level: f64, need: f64, limit: u64) -> bool {
    limit > 0 && level + need > limit as f64 + EPS
}

/// Milliseconds until `level` drains enough for `need` more to fit under `limit`.
fn wait(level: f64, need: f64, limit: u64) -> i64 {
    ((level + need - limit as f64) * WINDOW_MS / limit as f64 - EPS_MS)
        .ceil()
        .max(0.0) as i64
}

/// What fits now and when the bucket is empty again (`None`: no such limit).
fn left(level: f64, limit: u64) -> (Option<u64>, u64) {
    if limit == 0 {
        return (None, 0);
    }
    (
        Some((limit as f64 - level + EPS).floor().max(0.0) as u64),
        (level * WINDOW_MS / limit as f64 - EPS_MS).ceil().max(0.0) as u64,
    )
}

/// One scope's drained view during a decision.
struct View {
    requests: f64,
    tokens: f64,
    rpm: u64,
    tpm: u64,
}

impl View {
    fn state(&self) -> ScopeState {
        let (requests_left, requests_reset_ms) = left(self.requests, self.rpm);
        let (tokens_left, tokens_reset_ms) = left(self.tokens, self.tpm);
        ScopeState {
            requests_left,
            requests_reset_ms,
            tokens_left,
            tokens_reset_ms,
        }
    }
}

fn poisoned() -> QuotaError {
    QuotaError::Unavailable("in-process quota state is poisoned".into())
}

#[async_trait]
impl QuotaStore for MemoryStore {
    async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError> {
        let now = r.now_ms;
        let mut guard = self.state.lock().map_err(|_| poisoned())?;
        let state = &mut *guard;
        let mut views = Vec::with_capacity(r.scopes.len());
        for s in &r.scopes {
            let l = &s.limits;
            let scope = state.scopes.entry(s.scope.clone()).or_default();
            // Leases of requests that never settled end here, and their holds with them.
            scope.leases.retain(|_, (_, expiry)| *expiry > now);
            views.push(View {
                requests: drained(scope.requests, scope.ts, now, l.rpm.unwrap_or(0)),
                tokens: drained(scope.tokens, scope.ts, now, l.tpm.unwrap_or(0)),
                rpm: l.rpm.unwrap_or(0),
                tpm: l.tpm.unwrap_or(0),
            });
        }
        let states = |views: &[View]| views.iter().map(View::state).collect::<Vec<_>>();
        let mut spent = vec![0i64; r.scopes.len()];
        for (i, s) in r.scopes.iter().enumerate() {
            if let Some(budget) = &s.limits.budget {
                match state
                    .spend
                    .get(&(s.scope.clone(), budget.period_id.clone()))
                {
                    Some(total) => spent[i] = *total,
                    None => return Ok(Decision::Unseeded(i)),
                }
            }
        }
        let tokens = r.tokens as f64;
        for (i, (s, v)) in r.scopes.iter().zip(&views).enumerate() {
            let l = &s.limits;
            let scope = &state.scopes[&s.scope];
            let refusal = if over(v.requests, 1.0, v.rpm) {
                Some(("rate_limit_requests", wait(v.requests, 1.0, v.rpm)))
            } else if over(v.tokens, tokens, v.tpm) {
                let retry = if r.tokens > v.tpm {
                    -1
                } else {
                    wait(v.tokens, tokens, v.tpm)
                };
                Some(("rate_limit_tokens", retry))
            } else if l
                .concurrency
                .is_some_and(|c| scope.leases.len() as u64 + 1 > c)
            {
                let first = scope.leases.values().map(|(_, e)| *e).min().unwrap_or(now);
                // Slots free when requests finish; the earliest expiry is only the latest bound.
                Some(("concurrency_limit", (first as i64 - now as i64).min(1000)))
            } else if let Some(budget) = &l.budget {
                (spent[i].saturating_add(scope.held()).saturating_add(r.cost)
                    > budget.limit_micro_usd)
                    .then_some(("budget_exceeded", budget.resets_in_ms as i64))
            } else {
                None
            };
            if let Some((dimension, retry)) = refusal {
                return Ok(decision(r, false, dimension, retry, i, &states(&views)));
            }
        }
        for (s, v) in r.scopes.iter().zip(&mut views) {
            let l = &s.limits;
            let scope = state.scopes.entry(s.scope.clone()).or_default();
            if v.rpm > 0 {
                v.requests += 1.0;
                scope.requests = v.requests;
            }
            if v.tpm > 0 {
                v.tokens += tokens;
                scope.tokens = v.tokens;
            }
            scope.ts = scope.ts.max(now);
            if l.leased() {
                // The maximum cost is held apart from the settled spend until the end, where
                // the scope has a budget: one set later never releases a hold it did not count.
                let held = if l.budget.is_some() { r.cost } else { 0 };
                scope
                    .leases
                    .insert(r.id.clone(), (held, now.saturating_add(r.lease_ms)));
            }
        }
        Ok(decision(r, true, "", 0, 0, &states(&views)))
    }

    async fn seed_spend(&self, scope: &Scoped, micro_usd: i64) -> Result<(), QuotaError> {
        if let Some(budget) = &scope.limits.budget {
            let mut state = self.state.lock().map_err(|_| poisoned())?;
            state
                .spend
                .entry((scope.scope.clone(), budget.period_id.clone()))
                .or_insert(micro_usd);
        }
        Ok(())
    }

    async fn forget_spend(&self, scope: &Scoped) -> Result<(), QuotaError> {
        if let Some(budget) = &scope.limits.budget {
            let mut state = self.state.lock().map_err(|_| poisoned())?;
            state
                .spend
                .remove(&(scope.scope.clone(), budget.period_id.clone()));
        }
        Ok(())
    }

    async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
        let mut guard = self.state.lock().map_err(|_| poisoned())?;
        let state = &mut *guard;
        for s in &r.scopes {
            let l = &s.limits;
            if let Some(scope) = state.scopes.get_mut(&s.scope) {
                // Ends the lease and its hold. As in Redis: a request that outlived its lease
                // keeps its tokens reserved.
                let released = l.leased() && scope.leases.remove(&r.id).is_some();
                // Tokens count from when they were reserved: only the difference changes.
                if l.tpm.is_some() && (released || !l.leased()) {
                    scope.tokens += used.tokens as f64 - r.tokens as f64;
                }
            }
            // A counter that is gone (a new period) is rebuilt from usage events instead.
            if let Some(budget) = &l.budget
                && let Some(spent) = state
                    .spend
                    .get_mut(&(s.scope.clone(), budget.period_id.clone()))
            {
                *spent = spent.saturating_add(used.cost);
            }
        }
        Ok(())
    }
}
