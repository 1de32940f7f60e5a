//! The Redis quota store: one Lua script reserves (checking every limit first), one
//! settles. Scripts are loaded once and called by SHA (reloaded if Redis lost them). All
//! keys of a scope share a hash tag, so the store works on Redis Cluster too.

use async_trait::async_trait;
use fred::{
    clients::Client,
    types::{Value, scripts::Script},
};

use super::{Decision, QuotaError, QuotaStore, Reservation, Usage, WINDOW, decision};

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

    fn keys(&self, r: &Reservation) -> Vec<String> {
        let base = format!("{}:q:{{{}}}", self.prefix, r.scope);
        let period = r
            .limits
            .budget
            .as_ref()
            .map_or("none", |b| b.period_id.as_str());
        vec![
            format!("{base}:req"),
            format!("{base}:tok"),
            format!("{base}:toksum"),
            format!("{base}:conc"),
            format!("{base}:spend:{period}"),
        ]
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
        let l = &r.limits;
        let budget = l.budget.as_ref();
        let args: Vec<Value> = vec![
            (r.now_ms as i64).into(),
            (WINDOW.as_millis() as i64).into(),
            r.id.as_str().into(),
            (l.rpm.unwrap_or(0) as i64).into(),
            (l.tpm.unwrap_or(0) as i64).into(),
            (r.tokens as i64).into(),
            (l.concurrency.unwrap_or(0) as i64).into(),
            (r.lease_ms as i64).into(),
            budget.map_or(-1, |b| b.limit_micro_usd).into(),
            r.cost.into(),
            (budget.map_or(0, |b| b.ttl_secs) as i64).into(),
            (budget.map_or(0, |b| b.resets_in_ms) as i64).into(),
        ];
        let reply: Vec<Value> = self
            .reserve
            .evalsha_with_reload(&self.client, self.keys(r), args)
            .await
            .map_err(unavailable)?;
        let dimension = reply
            .get(1)
            .and_then(|v| v.as_str().map(|s| s.to_string()))
            .unwrap_or_default();
        Ok(decision(
            int(&reply, 0) == 1,
            &dimension,
            int(&reply, 2),
            int(&reply, 3),
            int(&reply, 4),
            int(&reply, 5),
            int(&reply, 6),
        ))
    }

    async fn settle(&self, r: &Reservation, used: Usage) -> Result<(), QuotaError> {
        let budget = r.limits.budget.as_ref();
        let args: Vec<Value> = vec![
            r.id.as_str().into(),
            (r.tokens as i64).into(),
            (used.tokens as i64).into(),
            r.cost.into(),
            used.cost.into(),
            (if budget.is_some() { 1 } else { 0 }).into(),
            (budget.map_or(0, |b| b.ttl_secs) as i64).into(),
            (WINDOW.as_millis() as i64).into(),
        ];
        let _: Value = self
            .settle
            .evalsha_with_reload(&self.client, self.keys(r), args)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
