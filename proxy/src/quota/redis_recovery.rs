//! What a stall between the gateway and Redis leaves behind, put right once Redis answers
//! again: reservations the gateway gave up on (their slots freed, their requests counted
//! once if they were served under the local limiter and not at all otherwise) and
//! settlements that did not go through. A task of its own retries them, in batches, until
//! Redis takes them; nothing of it is on the request path.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fred::{clients::Client, types::scripts::Script};
use tokio::sync::Notify;

use super::{
    Reservation, Usage,
    redis_batch::{call_parts, connected},
    redis_store::{
        SETTLE, landed_key, release_args, released_key, scope_keys, settle_args, settle_keys,
    },
};

const RELEASE: &str = include_str!("release.lua");

/// Most entries kept: a long outage at full traffic is cut off here (and says so).
const MAX_LOST: usize = 100_000;
/// Most entries in one script call.
const BATCH: usize = 32;
/// Wait before trying again while Redis does not answer.
const RETRY: Duration = Duration::from_millis(250);

pub enum Lost {
    /// A reservation given up on: served under the local limiter (what it used) or refused;
    /// put right once Redis's clock passed `not_before` (its reserves' latest deadline).
    Reserve {
        r: Reservation,
        served: Option<Usage>,
        not_before: f64,
        /// A step of a reservation on a Redis Cluster, known to have been applied and given
        /// back because a later step refused or failed: its own marker (`tag`), so that a
        /// later attempt of the same request is given back again. 0: a reservation given
        /// up on, whose marker is the reservation's and whose being applied release.lua
        /// finds out.
        given_back: u64,
    },
    /// A settlement that failed; `gated`: it may have been applied already.
    Settle {
        r: Reservation,
        used: Usage,
        gated: bool,
    },
}

pub struct Recovery {
    lost: Mutex<VecDeque<Lost>>,
    wake: Notify,
    overflowed: AtomicBool,
}

impl Recovery {
    /// Starts the task that works the entries off, on `runtime`, with its own connection.
    pub fn start(client: Client, prefix: &str, runtime: &tokio::runtime::Handle) -> Arc<Self> {
        let recovery = Arc::new(Recovery {
            lost: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            overflowed: AtomicBool::new(false),
        });
        runtime.spawn(work_off(
            Arc::downgrade(&recovery),
            client,
            prefix.to_string(),
        ));
        recovery
    }

    pub fn push(&self, lost: Lost) {
        let Ok(mut queue) = self.lost.lock() else {
            return;
        };
        if queue.len() >= MAX_LOST {
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "more than {MAX_LOST} quota reservations wait for Redis to answer again; \
                     later ones are not put right (their slots end with their leases)"
                );
            }
            return;
        }
        queue.push_back(lost);
        drop(queue);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Lost> {
        let Ok(mut queue) = self.lost.lock() else {
            return Vec::new();
        };
        let n = queue.len().min(BATCH);
        queue.drain(..n).collect()
    }

    /// Puts back a batch that failed, to be tried first next time. A settlement that failed
    /// again may have been applied by now.
    fn put_back(&self, batch: Vec<Lost>) {
        let Ok(mut queue) = self.lost.lock() else {
            return;
        };
        for lost in batch.into_iter().rev() {
            queue.push_front(match lost {
                Lost::Settle { r, used, .. } => Lost::Settle {
                    r,
                    used,
                    gated: true,
                },
                reserve => reserve,
            });
        }
        if queue.len() < MAX_LOST {
            self.overflowed.store(false, Ordering::Relaxed);
        }
    }
}

async fn work_off(recovery: Weak<Recovery>, client: Client, prefix: String) {
    let release = Script::from_lua(RELEASE);
    let settle = Script::from_lua(SETTLE);
    connected(&client).await;
    loop {
        let Some(rec) = recovery.upgrade() else {
            return;
        };
        let batch = rec.take();
        if batch.is_empty() {
            // Woken by the next entry; the store's end is noticed within a few seconds.
            let _ = tokio::time::timeout(Duration::from_secs(5), rec.wake.notified()).await;
            continue;
        }
        let (reserves, settles): (Vec<Lost>, Vec<Lost>) = batch
            .into_iter()
            .partition(|l| matches!(l, Lost::Reserve { .. }));
        let mut failed = Vec::new();
        for (script, operation, group) in [
            (&release, "release", reserves),
            (&settle, "settle", settles),
        ] {
            if group.is_empty() {
                continue;
            }
            let retry = run(&client, script, operation, &prefix, &group).await;
            failed.extend(
                group
                    .into_iter()
                    .zip(retry)
                    .filter_map(|(lost, retry)| retry.then_some(lost)),
            );
        }
        if !failed.is_empty() {
            rec.put_back(failed);
            drop(rec);
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Gives back, now, steps of a reservation a Redis Cluster applied (`Lost::Reserve` with
/// `given_back`); answers those whose call got no answer, for the recovery task.
pub async fn give_back(client: &Client, prefix: &str, steps: Vec<Lost>) -> Vec<Lost> {
    let release = Script::from_lua(RELEASE);
    let retry = run(client, &release, "release", prefix, &steps).await;
    steps
        .into_iter()
        .zip(retry)
        .filter_map(|(lost, retry)| retry.then_some(lost))
        .collect()
}

/// The script calls for a batch of one kind; answers, per entry, whether to try it again:
/// it came too early, or its call got no answer.
async fn run(
    client: &Client,
    script: &Script,
    operation: &'static str,
    prefix: &str,
    batch: &[Lost],
) -> Vec<bool> {
    let parts = batch
        .iter()
        .map(|lost| {
            let mut keys = Vec::new();
            match lost {
                Lost::Reserve {
                    r,
                    served,
                    not_before,
                    given_back,
                } => {
                    keys.push(released_key(prefix, r, *given_back));
                    keys.push(landed_key(prefix, r));
                    scope_keys(prefix, r, &mut keys);
                    (
                        keys,
                        release_args(r, *served, *not_before, *given_back != 0),
                    )
                }
                Lost::Settle { r, used, gated } => {
                    (settle_keys(prefix, r), settle_args(r, *used, *gated))
                }
            }
        })
        .collect();
    call_parts(client, script, operation, parts)
        .await
        .into_iter()
        .map(|reply| match reply {
            Ok(done) => done.as_i64() == Some(2),
            Err(e) if e.maybe_applied() => {
                tracing::debug!("putting quota reservations right after a stall failed: {e}");
                true
            }
            // One entry's own failure (a key holding something else) is not retried.
            Err(e) => {
                tracing::warn!("a quota reservation could not be put right after a stall: {e}");
                false
            }
        })
        .collect()
}
