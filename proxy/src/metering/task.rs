//! The metering task: takes finished requests off the channel, has their usage worked out
//! (estimates a few at once on blocking threads), settles their quota and gathers their
//! events into batches for the writer.

use std::{collections::VecDeque, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinSet};
use tollgate_core::store::entity::usage_event;

use crate::{
    metering::{
        Message,
        finished::Finished,
        journal::Journal,
        pricing::{Measured, by_size, measure},
        writer::{BATCH_SIZE, Batch, Writer, event, write_batches},
    },
    metrics::shared,
    quota::{Usage as QuotaUsage, limiter::Limiter},
};

const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
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
    loop {
        tokio::select! {
            // A full waiting line leaves new events in the channel until estimates finish.
            received = rx.recv(), if estimates.waiting.len() < MAX_WAITING_ESTIMATE => match received {
                Some(Message::Finished(finished)) => {
                    if let Some(m) = shared::shared() {
                        m.usage_queue.set(i64::try_from(rx.len()).unwrap_or(i64::MAX));
                    }
                    if finished.usage.is_none() && finished.upstream_ok {
                        estimates.add(finished);
                    } else {
                        let measured = measure(&finished);
                        rows.push(&finished, measured).await;
                    }
                }
                // Everything received before the flush is written, estimates included.
                Some(Message::Flush(done)) => {
                    estimates.finish(&mut rows).await;
                    rows.send(Some(done)).await;
                }
                None => {
                    estimates.finish(&mut rows).await;
                    rows.send(None).await;
                    return;
                }
            },
            Some(joined) = estimates.running.join_next() => {
                estimates.done(joined, &mut rows).await;
            }
            _ = tick.tick() => {
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
        for s in f.settlements.iter().cloned() {
            let limiter = self.limiter.clone();
            let used = if s.used {
                QuotaUsage {
                    tokens: prompt.saturating_add(completion),
                    cost,
                }
            } else {
                QuotaUsage::default()
            };
            tokio::spawn(async move { limiter.settle(&s, used).await });
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
