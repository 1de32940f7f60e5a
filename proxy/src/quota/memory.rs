//! The in-process quota store of the embedded mode: the same sliding logs and checks as the
//! Redis script, under one lock (every step is short and never awaits).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use async_trait::async_trait;

use super::{
    Decision, QuotaError, QuotaStore, Reservation, ScopeState, Scoped, Usage, WINDOW, decision,
};

#[derive(Default)]
struct Scope {
    /// (admitted at ms, reservation id), oldest first.
    requests: VecDeque<(u64, String)>,
    /// (admitted at ms, reservation id, tokens), oldest first.
    tokens: VecDeque<(u64, String, u64)>,
    token_sum: u64,
    /// reservation id → lease expiry ms.
    inflight: HashMap<String, u64>,
    /// reservation id → (cost held against the budget, lease expiry ms).
    holds: HashMap<String, (i64, u64)>,
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

const WINDOW_MS: u64 = WINDOW.as_millis() as u64;

impl Scope {
    fn trim(&mut self, now: u64) {
        let cutoff = now.saturating_sub(WINDOW_MS);
        while self.requests.front().is_some_and(|(t, _)| *t <= cutoff) {
            self.requests.pop_front();
        }
        while let Some((t, _, n)) = self.tokens.front() {
            if *t > cutoff {
                break;
            }
            self.token_sum = self.token_sum.saturating_sub(*n);
            self.tokens.pop_front();
        }
        self.inflight.retain(|_, expiry| *expiry > now);
        self.holds.retain(|_, (_, expiry)| *expiry > now);
    }

    fn held(&self) -> i64 {
        self.holds.values().map(|(cost, _)| *cost).sum()
    }

    fn request_reset(&self, now: u64) -> i64 {
        self.requests
            .front()
            .map_or(0, |(t, _)| (t + WINDOW_MS) as i64 - now as i64)
    }

    /// When `need` more tokens fit under `tpm`; -1 if never.
    fn token_reset(&self, need: u64, tpm: u64, now: u64) -> i64 {
        if tpm == 0 {
            return 0;
        }
        if need > tpm {
            return -1;
        }
        let over = self.token_sum.saturating_add(need).saturating_sub(tpm);
        if over == 0 {
            return 0;
        }
        let mut freed = 0;
        for (t, _, n) in &self.tokens {
            freed += n;
            if freed >= over {
                return (t + WINDOW_MS) as i64 - now as i64;
            }
        }
        WINDOW_MS as i64
    }

    fn state(&self, rpm: u64, tpm: u64, now: u64) -> ScopeState {
        ScopeState {
            requests_left: (rpm > 0).then(|| rpm.saturating_sub(self.requests.len() as u64)),
            requests_reset_ms: self.request_reset(now).max(0) as u64,
            tokens_left: (tpm > 0).then(|| tpm.saturating_sub(self.token_sum)),
            tokens_reset_ms: self.token_reset(0, tpm, now).max(0) as u64,
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
        for s in &r.scopes {
            state.scopes.entry(s.scope.clone()).or_default().trim(now);
        }
        let states = |state: &State| -> Vec<ScopeState> {
            r.scopes
                .iter()
                .map(|s| {
                    state
                        .scopes
                        .get(&s.scope)
                        .map_or_else(ScopeState::default, |sc| {
                            sc.state(s.limits.rpm.unwrap_or(0), s.limits.tpm.unwrap_or(0), now)
                        })
                })
                .collect()
        };
        for (i, s) in r.scopes.iter().enumerate() {
            if let Some(budget) = &s.limits.budget
                && !state
                    .spend
                    .contains_key(&(s.scope.clone(), budget.period_id.clone()))
            {
                return Ok(Decision::Unseeded(i));
            }
        }
        for (i, s) in r.scopes.iter().enumerate() {
            let Some(scope) = state.scopes.get(&s.scope) else {
                continue;
            };
            let l = &s.limits;
            let refusal = if l
                .rpm
                .is_some_and(|rpm| scope.requests.len() as u64 + 1 > rpm)
            {
                Some(("rate_limit_requests", scope.request_reset(now)))
            } else if let Some(tpm) = l
                .tpm
                .filter(|tpm| scope.token_sum.saturating_add(r.tokens) > *tpm)
            {
                Some(("rate_limit_tokens", scope.token_reset(r.tokens, tpm, now)))
            } else if l
                .concurrency
                .is_some_and(|c| scope.inflight.len() as u64 + 1 > c)
            {
                let first = scope.inflight.values().min().copied().unwrap_or(now);
                Some(("concurrency_limit", (first as i64 - now as i64).min(1000)))
            } else if let Some(budget) = &l.budget {
                let spent = state
                    .spend
                    .get(&(s.scope.clone(), budget.period_id.clone()))
                    .copied()
                    .unwrap_or(0);
                (spent.saturating_add(scope.held()).saturating_add(r.cost) > budget.limit_micro_usd)
                    .then_some(("budget_exceeded", budget.resets_in_ms as i64))
            } else {
                None
            };
            if let Some((dimension, wait)) = refusal {
                return Ok(decision(r, false, dimension, wait, i, &states(state)));
            }
        }
        for s in &r.scopes {
            let scope = state.scopes.entry(s.scope.clone()).or_default();
            scope.requests.push_back((now, r.id.clone()));
            if r.tokens > 0 {
                scope.tokens.push_back((now, r.id.clone(), r.tokens));
                scope.token_sum = scope.token_sum.saturating_add(r.tokens);
            }
            scope.inflight.insert(r.id.clone(), now + r.lease_ms);
            if s.limits.budget.is_some() {
                // The maximum cost is held apart from the settled spend until the end.
                scope.holds.insert(r.id.clone(), (r.cost, now + r.lease_ms));
            }
        }
        Ok(decision(r, true, "", 0, 0, &states(state)))
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
            if let Some(scope) = state.scopes.get_mut(&s.scope) {
                if let Some(entry) = scope
                    .tokens
                    .iter_mut()
                    .find(|(_, id, n)| *id == r.id && *n == r.tokens)
                {
                    scope.token_sum = scope.token_sum - entry.2 + used.tokens;
                    entry.2 = used.tokens;
                }
                scope.inflight.remove(&r.id);
                scope.holds.remove(&r.id);
            }
            // A counter that is gone (a new period) is rebuilt from usage events instead.
            if let Some(budget) = &s.limits.budget
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
