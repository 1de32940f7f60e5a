//! The Redis quota store: one Lua script reserves (checking every limit first), one
//! settles. Scripts are loaded once and called by SHA (reloaded if Redis lost them). All
//! keys of a scope share a hash tag; one call spans a request's scopes (key, user, team,
//! deployment), so it needs a single Redis, not a Cluster.
//!
//! A connection runs one script at a time (a client must not pipeline them), so both steps
//! are batched: while one call is under way, the next requests gather and go out together
//! in one call, alone when traffic is light. Reserves, on the request path, go out on a
//! connection of the calling thread's own runtime: handing each call to a connection driven
//! by another runtime and back costs two thread wake-ups, about 0.1 ms per round trip on a
//! quiet host. Settlements, off the request path, have a connection of their own.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use fred::{
    clients::Client,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions, Value, scripts::Script},
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::redis::{COMMAND_TIMEOUT, another_connection};

use super::{
    Decision, QuotaError, QuotaStore, Reservation, ScopeState, Scoped, Usage, WINDOW, decision,
};

const RESERVE: &str = include_str!("reserve.lua");
const SETTLE: &str = include_str!("settle.lua");

/// Most reservations in one script call (each takes Redis some 30 µs): bounds how long a
/// call keeps Redis busy and the wait of the first request in it.
const MAX_RESERVE_BATCH: usize = 16;
/// Most settlements in one script call.
const MAX_SETTLE_BATCH: usize = 32;

/// Tells stores apart (tests run several in one process).
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Per store, the queue of this thread's reserve batches and the task sending them.
    static NEAR: RefCell<HashMap<u64, (Queue, JoinHandle<()>)>> = RefCell::new(HashMap::new());
}

type Queue = mpsc::UnboundedSender<Pending>;

pub struct RedisStore {
    id: u64,
    client: Client,
    /// Prefix of every key, so tests (or tenants) can share one Redis.
    prefix: String,
    settler: Settler,
}

/// One request's part of a script call, waiting for its batch, and who waits for its reply.
struct Pending {
    keys: Vec<String>,
    args: Vec<Value>,
    done: oneshot::Sender<Result<Value, QuotaError>>,
}

impl Pending {
    /// Queues a call's part and waits for its reply, at most [`COMMAND_TIMEOUT`] (a part
    /// whose caller gave up is not sent).
    async fn call(
        queue: impl FnOnce(Pending) -> bool,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, QuotaError> {
        let (done, reply) = oneshot::channel();
        let ended = || QuotaError::Unavailable("the quota script task ended".into());
        if !queue(Pending { keys, args, done }) {
            return Err(ended());
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, reply).await {
            Ok(reply) => reply.unwrap_or_else(|_| Err(ended())),
            Err(_) => Err(QuotaError::Unavailable(format!(
                "no answer within {} ms",
                COMMAND_TIMEOUT.as_millis()
            ))),
        }
    }
}

/// The settlement queue and how to start its task again should it end.
struct Settler {
    queue: Mutex<Queue>,
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl Settler {
    fn start(client: Client, runtime: tokio::runtime::Handle) -> Self {
        let queue = Mutex::new(Self::spawn(&client, &runtime));
        Settler {
            queue,
            client,
            runtime,
        }
    }

    fn spawn(client: &Client, runtime: &tokio::runtime::Handle) -> Queue {
        let (queue, batched) = mpsc::unbounded_channel();
        runtime.spawn(batches(client.clone(), SETTLE, batched, MAX_SETTLE_BATCH));
        queue
    }

    /// Queues a settlement; a task that ended is started again.
    fn queue(&self, pending: Pending) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        match queue.send(pending) {
            Ok(()) => true,
            Err(mpsc::error::SendError(pending)) => {
                tracing::warn!("the quota settlement task ended; starting it again");
                *queue = Self::spawn(&self.client, &self.runtime);
                queue.send(pending).is_ok()
            }
        }
    }
}

impl RedisStore {
    /// Settlements get a connection of their own, and their batching task, on `runtime`.
    pub fn new(client: Client, prefix: &str, runtime: &tokio::runtime::Handle) -> Self {
        RedisStore {
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            settler: Settler::start(another_connection(&client, runtime), runtime.clone()),
            client,
            prefix: prefix.to_string(),
        }
    }

    /// Queues a reservation on the calling thread's reserve batches; their task and its
    /// connection are made on first use, on the caller's runtime, and made again if the task
    /// ended (its runtime shut down).
    fn queue_near(&self, pending: Pending) -> bool {
        NEAR.with_borrow_mut(|near| {
            if let Some((queue, task)) = near.get(&self.id)
                && !task.is_finished()
            {
                return queue.send(pending).is_ok();
            }
            let runtime = tokio::runtime::Handle::current();
            let client = another_connection(&self.client, &runtime);
            let (queue, batched) = mpsc::unbounded_channel();
            let task = runtime.spawn(batches(client, RESERVE, batched, MAX_RESERVE_BATCH));
            let sent = queue.send(pending).is_ok();
            near.insert(self.id, (queue, task));
            sent
        })
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
            // New names: earlier versions kept a hash under `:state` (which GET cannot read)
            // and counted `:leases` in it; the two must not mix during an upgrade.
            keys.push(format!("{base}:levels"));
            keys.push(format!("{base}:running"));
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
        let reply = Pending::call(|p| self.queue_near(p), self.keys(r), args)
            .await?
            .into_array();
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
        Pending::call(|p| self.settler.queue(p), self.keys(r), args).await?;
        Ok(())
    }
}

/// Sends a script's queued calls, as many as wait (up to `max`) in one call, one call at a
/// time: alone when traffic is light, batched when it is not. Each part gets its own reply.
async fn batches(
    client: Client,
    lua: &'static str,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    max: usize,
) {
    let script = Script::from_lua(lua);
    let mut batch = Vec::with_capacity(max);
    while queue.recv_many(&mut batch, max).await > 0 {
        // Callers that gave up (timed out) are not reserved or settled for.
        batch.retain(|p| !p.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let mut keys = Vec::new();
        let mut args = vec![Value::from(batch.len() as i64)];
        for p in &mut batch {
            keys.append(&mut p.keys);
            args.append(&mut p.args);
        }
        let replies = script
            .evalsha_with_reload::<Value, _, _>(&client, keys, args)
            .await
            .map_err(unavailable)
            .map(Value::into_array)
            .and_then(|replies| {
                if replies.len() == batch.len() {
                    Ok(replies)
                } else {
                    Err(QuotaError::Unavailable(format!(
                        "the quota script answered {} parts for {}",
                        replies.len(),
                        batch.len()
                    )))
                }
            });
        match replies {
            Ok(replies) => {
                for (p, reply) in batch.drain(..).zip(replies) {
                    let _ = p.done.send(part(reply));
                }
            }
            Err(e) => {
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One part's reply, or the error the script answered in its place (`{-1, message}`).
fn part(reply: Value) -> Result<Value, QuotaError> {
    match &reply {
        Value::Array(fields) if fields.first().and_then(Value::as_i64) == Some(-1) => {
            let message = fields
                .get(1)
                .and_then(|m| m.as_str().map(|m| m.to_string()))
                .unwrap_or_default();
            Err(QuotaError::Unavailable(format!(
                "the quota script failed: {message}"
            )))
        }
        _ => Ok(reply),
    }
}
