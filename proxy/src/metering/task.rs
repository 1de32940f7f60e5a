//! The metering task: takes finished requests from the inbox, has their usage worked out
//! (estimates a few at once on blocking threads), settles their quota and gathers their
//! events into batches for the writer.

use std::{
    collections::VecDeque, panic::AssertUnwindSafe, sync::Arc, sync::atomic::Ordering,
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinSet};
use tollgate_core::store::entity::usage_event;

use crate::{
    metering::{
        Inbox, Message, estimate,
        finished::Finished,
        journal::Journal,
        pricing::{Measured, by_size, measure},
        writer::{BATCH_SIZE, Batch, Writer, event, write_batches},
    },
    metrics::shared,
    quota::{Usage as QuotaUsage, limiter::Limiter},
};

const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the inbox is emptied while records come.
pub(super) const TAKE_EVERY: Duration = Duration::from_millis(10);
/// Empty takes in a row after which the task parks until the next record.
const PARK_AFTER: u32 = 100;
/// Usage estimates worked out at once.
const MAX_ESTIMATING: usize = 4;
/// Events waiting for an estimate before the metering task takes no more from its channel.
const MAX_WAITING_ESTIMATE: usize = 10_000;

/// Batches finished requests for the writer. Quota settlement and the tokenizer never wait
/// for the database: a slow or unreachable database delays only the writer task. Estimates
/// run apart, a few at once: a slow one (a multi-MiB prompt) holds back neither the others
/// nor the events that need none.
pub(super) async fn run(
    mut rx: mpsc::Receiver<Message>,
    inbox: Arc<Inbox>,
    writer: Writer,
    limiter: Arc<Limiter>,
    estimate: fn(&Finished) -> Measured,
    journal: Option<Journal>,
) {
    let (batches, writer_rx) = mpsc::channel::<Batch>(64);
    tokio::spawn(write_batches(
        writer_rx,
        writer,
        journal.as_ref().map(Journal::keeper),
    ));
    let mut rows = Rows {
        batch: Vec::with_capacity(BATCH_SIZE),
        batches,
        limiter,
        journal,
        journaled: 0,
    };
    let mut estimates = Estimates {
        waiting: VecDeque::new(),
        running: JoinSet::new(),
        estimate,
    };
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    let mut take = tokio::time::interval(TAKE_EVERY);
    take.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut parked = false;
    let mut idle = 0;
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                // Everything recorded before the flush is written, estimates included.
                Some(Message::Flush(done)) => {
                    take_all(&inbox, &mut estimates, &mut rows).await;
                    estimates.finish(&mut rows).await;
                    rows.send(Some(done)).await;
                }
                None => {
                    take_all(&inbox, &mut estimates, &mut rows).await;
                    estimates.finish(&mut rows).await;
                    rows.send(None).await;
                    return;
                }
            },
            // A full waiting line leaves new records in the inbox until estimates finish.
            _ = take.tick(), if !parked && estimates.waiting.len() < MAX_WAITING_ESTIMATE => {
                if take_all(&inbox, &mut estimates, &mut rows).await > 0 {
                    idle = 0;
                } else {
                    idle += 1;
                    if idle >= PARK_AFTER {
                        inbox.parked.store(true, Ordering::SeqCst);
                        // A record put just before the flag went up woke no one: look again.
                        parked = inbox.records.lock().map_or(true, |r| r.is_empty());
                        if !parked {
                            inbox.parked.store(false, Ordering::SeqCst);
                        }
                    }
                }
            }
            _ = inbox.wake.notified(), if parked => {
                parked = false;
                idle = 0;
                take_all(&inbox, &mut estimates, &mut rows).await;
            }
            Some(joined) = estimates.running.join_next() => {
                estimates.done(joined, &mut rows).await;
            }
            _ = tick.tick() => {
                estimate::release_unused_tokenizer();
                if !rows.batch.is_empty() {
                    rows.send(None).await;
                } else {
                    // Lets the writer replay spilled events even when no traffic comes.
                    let _ = rows.batches.try_send(Batch { rows: Vec::new(), done: None, journaled: 0 });
                }
            }
        }
    }
}

/// Takes every record in the inbox: those with the upstream's usage are measured and
/// batched at once, the others wait for an estimate. Answers how many were taken.
async fn take_all(inbox: &Inbox, estimates: &mut Estimates, rows: &mut Rows) -> usize {
    let taken = inbox.take();
    if let Some(m) = shared::shared() {
        m.usage_queue.set(0);
    }
    let n = taken.len();
    for finished in taken {
        if finished.usage.is_none() && finished.upstream_ok {
            estimates.add(Box::new(finished));
        } else {
            let measured = measure(&finished);
            rows.push(&finished, measured).await;
        }
    }
    n
}

/// Events waiting for a usage estimate, and those being estimated (each on a blocking
/// thread: the tokenizer is CPU work).
struct Estimates {
    waiting: VecDeque<Box<Finished>>,
    running: JoinSet<(Box<Finished>, Option<Measured>)>,
    estimate: fn(&Finished) -> Measured,
}

impl Estimates {
    fn add(&mut self, finished: Box<Finished>) {
        self.waiting.push_back(finished);
        self.start();
    }

    fn start(&mut self) {
        while self.running.len() < MAX_ESTIMATING
            && let Some(finished) = self.waiting.pop_front()
        {
            let estimate = self.estimate;
            self.running.spawn_blocking(move || {
                // A tokenizer panic must not lose the event (nor its quota release).
                let measured =
                    std::panic::catch_unwind(AssertUnwindSafe(|| estimate(&finished))).ok();
                (finished, measured)
            });
        }
    }

    async fn done(
        &mut self,
        joined: Result<(Box<Finished>, Option<Measured>), tokio::task::JoinError>,
        rows: &mut Rows,
    ) {
        match joined {
            Ok((finished, Some(measured))) => rows.push(&finished, measured).await,
            Ok((finished, None)) => {
                tracing::error!(
                    request_id = %finished.request_id,
                    "estimating usage failed; metering the request by its size instead"
                );
                let measured = by_size(&finished);
                rows.push(&finished, measured).await;
            }
            // Only if the runtime is shutting down: the task was cancelled.
            Err(e) => tracing::error!("estimating usage ended early: {e}"),
        }
        self.start();
    }

    /// Waits for every estimate, those waiting included.
    async fn finish(&mut self, rows: &mut Rows) {
        while let Some(joined) = self.running.join_next().await {
            self.done(joined, rows).await;
        }
    }
}

/// The batch being gathered, where batches go, the quotas to settle, and the journal.
struct Rows {
    batch: Vec<usage_event::Model>,
    batches: mpsc::Sender<Batch>,
    limiter: Arc<Limiter>,
    journal: Option<Journal>,
    /// The journal's sequence number of the batch's last event.
    journaled: u64,
}

impl Rows {
    /// Settles the request's reservations to what it used and adds its event.
    async fn push(&mut self, f: &Finished, (prompt, completion, estimated, cost): Measured) {
        for s in &f.settlements {
            let used = if s.used {
                QuotaUsage {
                    // A hit's tokens were generated once, by the request that stored it.
                    tokens: if f.hit_cost.is_some() {
                        0
                    } else {
                        prompt.saturating_add(completion)
                    },
                    cost,
                }
            } else {
                QuotaUsage::default()
            };
            // Leased reservations settle here and now; the others wait on a store.
            if !self.limiter.settle_now(s, used) {
                let (limiter, s) = (self.limiter.clone(), s.clone());
                tokio::spawn(async move { limiter.settle(&s, used).await });
            }
        }
        let provider = f.deployment.split('/').next().unwrap_or_default();
        shared::cost(&f.model, provider, cost);
        let row = event(f, prompt, completion, estimated, cost);
        if let Some(journal) = &mut self.journal {
            self.journaled = journal.append(&row);
        }
        self.batch.push(row);
        if self.batch.len() >= BATCH_SIZE {
            self.send(None).await;
        }
    }

    /// Hands the batch to the writer.
    async fn send(&mut self, done: Option<tokio::sync::oneshot::Sender<()>>) {
        let rows = std::mem::take(&mut self.batch);
        let journaled = self.journaled;
        let _ = self
            .batches
            .send(Batch {
                rows,
                done,
                journaled,
            })
            .await;
    }
}
