//! The in-process quota store of the embedded mode: the same sliding logs and checks as the
//! Redis script, under one lock (every step is short and never awaits).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use async_trait::async_trait;

use super::{Decision, QuotaError, QuotaStore, Reservation, Usage, WINDOW, decision};

#[derive(Default)]
struct Scope {
    /// (admitted at ms, reservation id), oldest first.
    requests: VecDeque<(u64, String)>,
    /// (admitted at ms, reservation id, tokens), oldest first.
    tokens: VecDeque<(u64, String, u64)>,
    token_sum: u64,
    /// reservation id → lease expiry ms.
    inflight: HashMap<String, u64>,
}

#[derive(Default)]
pub struct MemoryStore {
    scopes: Mutex<HashMap<String, Scope>>,
    /// (scope, period id) → micro-USD spent or reserved.
    spend: Mutex<HashMap<(String, String), i64>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> QuotaError {
        QuotaError::Unavailable("in-process quota state is poisoned".into())
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
    }

    fn request_reset(&self, now: u64) -> i64 {
        self.requests
            .front()
            .map_or(0, |(t, _)| (t + WINDOW_MS) as i64 - now as i64)
    }

    fn token_reset(&self, need: u64, tpm: u64, now: u64) -> i64 {
        if need > tpm {
            return -1;
        }
        let over = (self.token_sum + need).saturating_sub(tpm);
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
}

#[async_trait]
impl QuotaStore for MemoryStore {
    async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError> {
        let now = r.now_ms;
        let mut scopes = self.scopes.lock().map_err(|_| Self::poisoned())?;
        let scope = scopes.entry(r.scope.clone()).or_default();
        scope.trim(now);
        let l = &r.limits;
        let rpm = l.rpm.unwrap_or(0);
        let tpm = l.tpm.unwrap_or(0);
        let requests = scope.requests.len() as u64;
        let rpm_left = if rpm > 0 {
            rpm as i64 - requests as i64
        } else {
            -1
        };
        let tpm_left = if tpm > 0 {
            tpm as i64 - scope.token_sum as i64
        } else {
            -1
        };
        let tokens_reset = |s: &Scope| {
            if tpm > 0 {
                s.token_reset(0, tpm, now)
            } else {
                0
            }
        };

        if rpm > 0 && requests + 1 > rpm {
            let wait = scope.request_reset(now);
            return Ok(decision(
                false,
                "rate_limit_requests",
                wait,
                0,
                wait,
                tpm_left,
                tokens_reset(scope),
            ));
        }
        if tpm > 0 && scope.token_sum + r.tokens > tpm {
            let wait = scope.token_reset(r.tokens, tpm, now);
            return Ok(decision(
                false,
                "rate_limit_tokens",
                wait,
                rpm_left,
                scope.request_reset(now),
                tpm_left.max(0),
                tokens_reset(scope),
            ));
        }
        if let Some(limit) = l.concurrency
            && scope.inflight.len() as u64 + 1 > limit
        {
            let first = scope.inflight.values().min().copied().unwrap_or(now);
            let wait = (first as i64 - now as i64).min(1000);
            return Ok(decision(
                false,
                "concurrency_limit",
                wait,
                rpm_left,
                scope.request_reset(now),
                tpm_left,
                tokens_reset(scope),
            ));
        }
        let mut spend = self.spend.lock().map_err(|_| Self::poisoned())?;
        if let Some(budget) = &l.budget {
            let spent = spend
                .get(&(r.scope.clone(), budget.period_id.clone()))
                .copied()
                .unwrap_or(0);
            if spent + r.cost > budget.limit_micro_usd {
                return Ok(decision(
                    false,
                    "budget_exceeded",
                    budget.resets_in_ms as i64,
                    rpm_left,
                    scope.request_reset(now),
                    tpm_left,
                    tokens_reset(scope),
                ));
            }
        }

        scope.requests.push_back((now, r.id.clone()));
        if r.tokens > 0 {
            scope.tokens.push_back((now, r.id.clone(), r.tokens));
            scope.token_sum += r.tokens;
        }
        scope.inflight.insert(r.id.clone(), now + r.lease_ms);
        if let Some(budget) = &l.budget {
            *spend
                .entry((r.scope.clone(), budget.period_id.clone()))
                .or_default() += r.cost;
        }
        let rpm_left = if rpm > 0 { rpm_left - 1 } else { -1 };
        let tpm_left = if tpm > 0 {
            tpm_left - r.tokens as i64
        } else {
            -1
        };
        Ok(decision(
            true,
            "",
            0,
            rpm_left,
            scope.request_reset(now),
            tpm_left,
            tokens_reset(scope),
        ))
    }

    async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
        {
            let mut scopes = self.scopes.lock().map_err(|_| Self::poisoned())?;
            if let Some(scope) = scopes.get_mut(&r.scope) {
                if let Some(entry) = scope
                    .tokens
                    .iter_mut()
                    .find(|(_, id, n)| *id == r.id && *n == r.tokens)
                {
                    scope.token_sum = scope.token_sum - entry.2 + used.tokens;
                    entry.2 = used.tokens;
                }
                scope.inflight.remove(&r.id);
            }
        }
        if let Some(budget) = &r.limits.budget {
            let mut spend = self.spend.lock().map_err(|_| Self::poisoned())?;
            *spend
                .entry((r.scope.clone(), budget.period_id.clone()))
                .or_default() += used.cost - r.cost;
        }
        Ok(())
    }
}
