//! Batching of the quota scripts' calls. A connection runs one script at a time (a client
//! must not pipeline them), so while one call is under way the next requests gather and go
//! out together in one call, alone when traffic is light. Reserves go out on a connection
//! of the calling thread's own runtime (handing a call to another runtime and back costs
//! two thread wake-ups, about 0.1 ms per round trip on a quiet host); settlements, off the
//! request path, have a connection of their own.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use fred::{
    clients::Client,
    interfaces::ClientLike,
    types::{Value, scripts::Script},
    util::redis_keyslot,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    backend::redis::{COMMAND_TIMEOUT, another_connection},
    metrics::shared,
    quota::QuotaError,
};

/// Most reservations in one script call (each takes Redis some 30 µs): bounds how long a
/// call keeps Redis busy and the wait of the first request in it.
const MAX_RESERVE_BATCH: usize = 16;
/// Most settlements in one script call.
const MAX_SETTLE_BATCH: usize = 32;

thread_local! {
    /// Per store, the queue of this thread's reserve batches and the task sending them.
    static NEAR: RefCell<HashMap<u64, (Queue, JoinHandle<()>)>> = RefCell::new(HashMap::new());
}

type Queue = mpsc::UnboundedSender<Pending>;

/// Queues a reservation on the calling thread's reserve batches of store `store`; their
/// task and its connection are made on first use, on the caller's runtime, and made again
/// if the task ended (its runtime shut down).
pub fn queue_near(store: u64, client: &Client, lua: &'static str, pending: Pending) -> bool {
    NEAR.with_borrow_mut(|near| {
        if let Some((queue, task)) = near.get(&store)
            && !task.is_finished()
        {
            return queue.send(pending).is_ok();
        }
        let runtime = tokio::runtime::Handle::current();
        let client = another_connection(client, &runtime);
        let (queue, batched) = mpsc::unbounded_channel();
        let task = runtime.spawn(batches(client, lua, "reserve", batched, MAX_RESERVE_BATCH));
        let sent = queue.send(pending).is_ok();
        near.insert(store, (queue, task));
        sent
    })
}

/// One request's part of a script call, waiting for its batch, and who waits for its reply.
pub struct Pending {
    pub keys: Vec<String>,
    pub args: Vec<Value>,
    pub done: oneshot::Sender<Result<Value, QuotaError>>,
    /// Set when the part goes out: from then on a failure may have been applied.
    sent: Arc<AtomicBool>,
}

impl Pending {
    /// Queues a call's part and waits for its reply, at most [`COMMAND_TIMEOUT`] (a part
    /// whose caller gave up is not sent). A part that went out and got no answer is
    /// [`QuotaError::Unanswered`]: Redis may run it yet.
    pub async fn call(
        queue: impl FnOnce(Pending) -> bool,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, QuotaError> {
        let (done, reply) = oneshot::channel();
        let sent = Arc::new(AtomicBool::new(false));
        let pending = Pending {
            keys,
            args,
            done,
            sent: sent.clone(),
        };
        let ended = || QuotaError::Unavailable("the quota script task ended".into());
        if !queue(pending) {
            return Err(ended());
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, reply).await {
            Ok(reply) => reply.unwrap_or_else(|_| Err(ended())),
            Err(_) => {
                let message = format!("no answer within {} ms", COMMAND_TIMEOUT.as_millis());
                // The flag is raised before a part's caller is checked for, so it is never
                // down for a part that went out (it may be up for one dropped at that
                // moment, which only makes the caller careful).
                Err(if sent.load(Ordering::SeqCst) {
                    QuotaError::Unanswered(message)
                } else {
                    QuotaError::Unavailable(message)
                })
            }
        }
    }
}

/// The settlement queue and how to start its task again should it end.
pub struct Settler {
    queue: Mutex<Queue>,
    client: Client,
    runtime: tokio::runtime::Handle,
    lua: &'static str,
}

impl Settler {
    pub fn start(client: Client, runtime: tokio::runtime::Handle, lua: &'static str) -> Self {
        let queue = Mutex::new(Self::spawn(&client, &runtime, lua));
        Settler {
            queue,
            client,
            runtime,
            lua,
        }
    }

    fn spawn(client: &Client, runtime: &tokio::runtime::Handle, lua: &'static str) -> Queue {
        let (queue, batched) = mpsc::unbounded_channel();
        runtime.spawn(batches(
            client.clone(),
            lua,
            "settle",
            batched,
            MAX_SETTLE_BATCH,
        ));
        queue
    }

    /// Queues a settlement; a task that ended is started again.
    pub fn queue(&self, pending: Pending) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        match queue.send(pending) {
            Ok(()) => true,
            Err(mpsc::error::SendError(pending)) => {
                tracing::warn!("the quota settlement task ended; starting it again");
                *queue = Self::spawn(&self.client, &self.runtime, self.lua);
                queue.send(pending).is_ok()
            }
        }
    }
}

/// Sends a script's queued calls, as many as wait (up to `max`) in one call, one call at a
/// time: alone when traffic is light, batched when it is not. Each part gets its own reply.
async fn batches(
    client: Client,
    lua: &'static str,
    operation: &'static str,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    max: usize,
) {
    let script = Script::from_lua(lua);
    let mut batch = Vec::with_capacity(max);
    connected(&client).await;
    while queue.recv_many(&mut batch, max).await > 0 {
        // Callers that gave up (timed out) are not reserved or settled for.
        batch.retain(|p| {
            p.sent.store(true, Ordering::SeqCst);
            !p.done.is_closed()
        });
        if batch.is_empty() {
            continue;
        }
        let parts = batch
            .iter_mut()
            .map(|p| (std::mem::take(&mut p.keys), std::mem::take(&mut p.args)))
            .collect();
        let replies = call_parts(&client, &script, operation, parts).await;
        for (p, reply) in batch.drain(..).zip(replies) {
            let _ = p.done.send(reply);
        }
    }
}

/// The parts of one script call: those whose keys lie in one hash slot.
#[derive(Default)]
struct Group {
    slot: u16,
    /// Indexes of the parts.
    members: Vec<usize>,
    keys: Vec<String>,
    args: Vec<Value>,
}

/// Runs a script over several parts, each with its own keys and arguments, and answers each
/// part's reply (or the error in its place), in order. The script takes the number of parts
/// first, then every part's arguments. With one Redis this is one call; a Redis Cluster
/// runs a script only on keys of one hash slot, so there the parts (each with keys of one
/// slot) go out in one call per slot, those calls at once.
pub async fn call_parts(
    client: &Client,
    script: &Script,
    operation: &'static str,
    parts: Vec<(Vec<String>, Vec<Value>)>,
) -> Vec<Result<Value, QuotaError>> {
    let count = parts.len();
    let mut groups: Vec<Group> = Vec::new();
    let clustered = client.is_clustered();
    for (i, (mut keys, mut args)) in parts.into_iter().enumerate() {
        let slot = match keys.first() {
            Some(key) if clustered => redis_keyslot(key.as_bytes()),
            _ => 0,
        };
        let at = match groups.iter().position(|g| g.slot == slot) {
            Some(at) => at,
            None => {
                groups.push(Group {
                    slot,
                    ..Group::default()
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[at];
        group.members.push(i);
        group.keys.append(&mut keys);
        group.args.append(&mut args);
    }
    let calls = groups.into_iter().map(
        |Group {
             members,
             keys,
             args,
             ..
         }| async move {
            let mut all = Vec::with_capacity(1 + args.len());
            all.push(Value::from(members.len() as i64));
            all.extend(args);
            let replies = shared::redis(
                operation,
                script.evalsha_with_reload::<Value, _, _>(client, keys, all),
            )
            .await
            .map_err(|e| QuotaError::Unanswered(e.to_string()))
            .map(Value::into_array)
            .and_then(|replies| {
                if replies.len() == members.len() {
                    Ok(replies)
                } else {
                    Err(QuotaError::Unavailable(format!(
                        "the quota script answered {} parts for {}",
                        replies.len(),
                        members.len()
                    )))
                }
            });
            (members, replies)
        },
    );
    let mut out: Vec<Result<Value, QuotaError>> = (0..count)
        .map(|_| Err(QuotaError::Unavailable("no reply".into())))
        .collect();
    for (members, replies) in futures_util::future::join_all(calls).await {
        match replies {
            Ok(replies) => {
                for (i, reply) in members.into_iter().zip(replies) {
                    out[i] = part(reply);
                }
            }
            Err(e) => {
                for i in members {
                    out[i] = Err(e.clone());
                }
            }
        }
    }
    out
}

/// Waits (a while) for a new connection: a Cluster client routes nothing before it has
/// read the cluster's slots, and would fail the first calls instead of queueing them.
pub async fn connected(client: &Client) {
    let _ = tokio::time::timeout(COMMAND_TIMEOUT, client.wait_for_connect()).await;
}

/// One part's reply, or the error the script answered in its place (`{-1, message}`).
pub fn part(reply: Value) -> Result<Value, QuotaError> {
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

pub fn unavailable(e: fred::error::Error) -> QuotaError {
    QuotaError::Unavailable(e.to_string())
}
