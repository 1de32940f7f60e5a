//! The Redis quota store: one Lua script reserves (checking every limit first), one
//! settles. Scripts are loaded once and called by SHA (reloaded if Redis lost them). All
//! keys of a scope share a hash tag; one call spans a request's scopes (key, user, team,
//! deployment), so it needs a single Redis, not a Cluster.

use async_trait::async_trait;
use fred::{
    clients::Client,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions, Value, scripts::Script},
};

use super::{
    Decision, QuotaError, QuotaStore, Reservation, ScopeState, Scoped, Usage, WINDOW, decision,
};

const RESERVE: &str = include_str!("reserve.lua");
const SETTLE: &str = include_str!("settle.lua");

pub struct RedisStore {
    client: Client,
    /// Prefix of every key, so tests (or tenants) can share one Redis.
    prefix: String,
    reserve: Script,
    settle: Script,
}

impl RedisStore {
    pub fn new(client: Client, prefix: &str) -> Self {
        RedisStore {
            client,
            prefix: prefix.to_string(),
            reserve: Script::from_lua(RESERVE),
            settle: Script::from_lua(SETTLE),
        }
    }

    /// Three keys per scope, in the scripts' order.
    fn keys(&self, r: &Reservation) -> Vec<String> {
        let mut keys = Vec::with_capacity(r.scopes.len() * 3);
        for s in &r.scopes {
            let base = format!("{}:q:{{{}}}", self.prefix, s.scope);
            let period = s
                .limits
                .budget
                .as_ref()
                .map_or("none", |b| b.period_id.as_str());
            keys.push(format!("{base}:state"));
            keys.push(format!("{base}:leases"));
            keys.push(format!("{base}:spend:{period}"));
        }
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

fn unavailable(e: fred::error::Error) -> QuotaError {
    QuotaError::Unavailable(e.to_string())
}

fn int(values: &[Value], i: usize) -> i64 {
    values.get(i).and_then(|v| v.as_i64()).unwrap_or(0)
}

#[async_trait]
impl QuotaStore for RedisStore {
    async fn reserve(&self, r: &Reservation) -> Result<Decision, QuotaError> {
        let mut args: Vec<Value> = vec![
            (r.now_ms as i64).into(),
            (WINDOW.as_millis() as i64).into(),
            r.id.as_str().into(),
            (r.tokens as i64).into(),
            r.cost.into(),
            (r.lease_ms as i64).into(),
            (r.scopes.len() as i64).into(),
        ];
        for s in &r.scopes {
            let l = &s.limits;
            let budget = l.budget.as_ref();
            args.extend([
                Value::from(l.rpm.unwrap_or(0) as i64),
                Value::from(l.tpm.unwrap_or(0) as i64),
                Value::from(l.concurrency.unwrap_or(0) as i64),
                Value::from(budget.map_or(-1, |b| b.limit_micro_usd)),
                Value::from(budget.map_or(0, |b| b.resets_in_ms) as i64),
            ]);
        }
        let reply: Vec<Value> = self
            .reserve
            .evalsha_with_reload(&self.client, self.keys(r), args)
            .await
            .map_err(unavailable)?;
        let dimension = reply
            .get(1)
            .and_then(|v| v.as_str().map(|s| s.to_string()))
            .unwrap_or_default();
        let optional = |v: i64| u64::try_from(v).ok();
        let states: Vec<ScopeState> = (0..r.scopes.len())
            .map(|i| {
                let at = 4 + i * 4;
                ScopeState {
                    requests_left: optional(int(&reply, at)),
                    requests_reset_ms: int(&reply, at + 1).max(0) as u64,
                    tokens_left: optional(int(&reply, at + 2)),
                    tokens_reset_ms: int(&reply, at + 3).max(0) as u64,
                }
            })
            .collect();
        let scope = usize::try_from(int(&reply, 3) - 1).unwrap_or(0);
        Ok(decision(
            r,
            int(&reply, 0) == 1,
            &dimension,
            int(&reply, 2),
            scope,
            &states,
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
        let mut args: Vec<Value> = vec![
            r.id.as_str().into(),
            (r.tokens as i64).into(),
            (used.tokens as i64).into(),
            r.cost.into(),
            used.cost.into(),
            (r.scopes.len() as i64).into(),
        ];
        for s in &r.scopes {
            let l = &s.limits;
            args.extend(
                [l.tpm.is_some(), l.leased(), l.budget.is_some()]
                    .map(|on| Value::from(i64::from(on))),
            );
        }
        let _: Value = self
            .settle
            .evalsha_with_reload(&self.client, self.keys(r), args)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
