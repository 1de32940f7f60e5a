//! Usage metering: one event per finished request, built off the request path. `logging`
//! puts a [`Finished`] record in the inbox, which the metering task (on the store runtime)
//! empties every few milliseconds while traffic flows, so that handing a record over wakes
//! no thread; the task works out tokens — the upstream's usage, or an estimate marked as such — and
//! cost, settles the quota reservation, and batches events into multi-row inserts. When the
//! database is unreachable, batches go to an append-only spill file, replayed in order when
//! it is back; inserts ignore event ids already stored, so a replay never counts twice.
//! Each event is journaled to a local file first, synced every few milliseconds, so a crash
//! loses only the last moment's (see `journal`).

pub mod estimate;
pub mod finished;
mod journal;
pub mod pricing;
pub mod retention;
pub mod scan;
mod spill;
mod task;
mod writer;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use prometheus::IntCounterVec;
use tokio::sync::mpsc;

pub use finished::Finished;

use crate::{
    backend::Backend,
    metering::{pricing::Measured, writer::Writer},
    metrics::shared,
    quota::limiter::Limiter,
};

/// Events waiting for the metering task; far more than a flush interval's worth.
const INBOX_CAPACITY: usize = 100_000;
/// Most bytes of request bodies kept for usage estimates by queued events (waiting in the
/// inbox or for an estimate). Beyond it, an event keeps only its body's length and its
/// prompt is estimated by size: a backlog never makes the process's memory.
const MAX_HELD_BODY_BYTES: usize = 64 << 20;

/// The request bodies queued events hold, in bytes.
#[derive(Default)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
}

impl BodyBudget {
    /// Keeps `finished`'s body if it fits in what is left, charged until the event is gone;
    /// otherwise drops it (its length stays).
    fn admit(self: &Arc<Self>, finished: &mut Finished, limit: usize) {
        let len = finished.request_body.len();
        if len == 0 {
            return;
        }
        let before = self.held.fetch_add(len, Ordering::AcqRel);
        if before + len > limit {
            self.held.fetch_sub(len, Ordering::AcqRel);
            finished.request_body = bytes::Bytes::new();
            return;
        }
        finished.body_charge = Some(BodyCharge {
            budget: self.clone(),
            len,
        });
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One event's share of [`BodyBudget`], given back when the event is dropped.
pub struct BodyCharge {
    budget: Arc<BodyBudget>,
    len: usize,
}

impl Drop for BodyCharge {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// What the metering task is sent apart from the records.
enum Message {
    /// Write everything received so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Finished requests waiting for the metering task. It takes them every
/// [`task::TAKE_EVERY`] while they come, and parks when none came for a while: then the
/// next record wakes it once.
pub(crate) struct Inbox {
    records: Mutex<Vec<Finished>>,
    parked: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            records: Mutex::new(Vec::new()),
            parked: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Adds a record and answers how many wait; gives it back if the inbox is full.
    fn put(&self, finished: Finished) -> (usize, Option<Finished>) {
        let queued = {
            let Ok(mut records) = self.records.lock() else {
                return (0, Some(finished));
            };
            if records.len() >= INBOX_CAPACITY {
                return (records.len(), Some(finished));
            }
            records.push(finished);
            records.len()
        };
        if self.parked.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        (queued, None)
    }

    /// Every record put so far.
    fn take(&self) -> Vec<Finished> {
        self.records
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

/// The sending side, held by the gateway.
pub struct Meter {
    inbox: Arc<Inbox>,
    bodies: Arc<BodyBudget>,
    tx: mpsc::Sender<Message>,
    outcomes: IntCounterVec,
    /// To release the quota of a request whose event could not be queued.
    limiter: Arc<Limiter>,
    runtime: tokio::runtime::Handle,
}

impl Meter {
    pub fn start(
        backend: Arc<Backend>,
        limiter: Arc<Limiter>,
        spill: PathBuf,
        outcomes: IntCounterVec,
    ) -> Meter {
        Self::start_with(backend, limiter, spill, outcomes, pricing::measure)
    }

    /// As [`Meter::start`], with the given way of working out a request's usage when its
    /// upstream reported none.
    fn start_with(
        backend: Arc<Backend>,
        limiter: Arc<Limiter>,
        spill: PathBuf,
        outcomes: IntCounterVec,
        estimate: fn(&Finished) -> Measured,
    ) -> Meter {
        let (tx, rx) = mpsc::channel(16);
        let inbox = Arc::new(Inbox::new());
        // Events journaled before a crash join the spilled ones, replayed first.
        let journal_dir = spill.with_file_name("usage-journal");
        match journal::recover(&journal_dir, &spill) {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} usage events from the journal of the last run"),
            Err(e) => tracing::error!("recovering the usage journal: {e}"),
        }
        let journal = journal::Journal::start(journal_dir)
            .inspect_err(|e| tracing::error!("no usage journal: {e}"))
            .ok();
        let spilled = std::fs::metadata(&spill).is_ok_and(|m| m.len() > 0);
        let writer = Writer {
            db: backend.db.clone(),
            spill,
            spilled,
            last_replay: None,
            replayed_to: 0,
            outcomes: outcomes.clone(),
        };
        backend.handle().spawn(task::run(
            rx,
            inbox.clone(),
            writer,
            limiter.clone(),
            estimate,
            journal,
        ));
        Meter {
            inbox,
            bodies: Arc::default(),
            tx,
            outcomes,
            limiter,
            runtime: backend.handle().clone(),
        }
    }

    /// Hands a finished request over; never waits.
    pub fn record(&self, mut finished: Finished) {
        self.bodies.admit(&mut finished, MAX_HELD_BODY_BYTES);
        let (queued, refused) = self.inbox.put(finished);
        if let Some(m) = shared::shared() {
            m.usage_queue.set(i64::try_from(queued).unwrap_or(i64::MAX));
        }
        if let Some(finished) = refused {
            // Only if the metering task is 100,000 events behind.
            self.outcomes.with_label_values(&["dropped"]).inc();
            tracing::error!("usage event dropped: the metering queue is full");
            // The request's quota must still be released (its concurrency slot above all):
            // settled as if it used all it reserved, which never undercounts.
            for s in finished.settlements {
                let limiter = self.limiter.clone();
                self.runtime
                    .spawn(async move { limiter.settle_reserved(&s).await });
            }
        }
    }

    /// Writes every event recorded so far (to the database or the spill file); for a
    /// graceful shutdown.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// A usage event for tests.
#[cfg(test)]
pub(crate) fn test_event(id: &str) -> tollgate_core::store::entity::usage_event::Model {
    tollgate_core::store::entity::usage_event::Model {
        id: 0,
        event_id: id.into(),
        request_id: "r".into(),
        occurred_at: chrono::Utc::now(),
        key_id: None,
        user_id: None,
        team_id: None,
        model: "m".into(),
        deployment: "d".into(),
        prompt_tokens: 1,
        completion_tokens: 2,
        cost_micro_usd: 3,
        status: 200,
        latency_ms: 4,
        ttft_ms: None,
        estimated: false,
        error_code: None,
        error_message: None,
        cache: None,
    }
}

/// A new event id.
pub fn event_id() -> String {
    format!("ev_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use prometheus::Opts;
    use sea_orm_migration::sea_orm::{EntityTrait, QueryOrder};
    use tollgate_core::config::{OnStoreError, QuotaSettings};

    use std::time::Duration;

    use bytes::Bytes;
    use chrono::Utc;
    use sea_orm_migration::sea_orm::DatabaseConnection;
    use tollgate_core::{store::entity::usage_event, usage::Usage};

    use super::*;
    use crate::{downstream::endpoints::Endpoint, quota::MemoryStore};

    /// Opened by the test: until then the estimate of the request `slow` does not end.
    static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

    fn gated(f: &Finished) -> Measured {
        if f.request_id == "slow" {
            let (open, opened) = &GATE;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }
        if f.request_id == "broken" {
            panic!("the tokenizer failed");
        }
        (1, 2, true, 0)
    }

    fn finished(request_id: &str, usage: Option<Usage>) -> Finished {
        Finished {
            event_id: event_id(),
            request_id: request_id.into(),
            occurred_at: Utc::now(),
            key_id: None,
            user_id: None,
            team_id: None,
            model: "m".into(),
            deployment: "d".into(),
            status: 200,
            latency_ms: 1,
            ttft_ms: None,
            usage,
            upstream_ok: true,
            streamed: false,
            endpoint: Endpoint::ChatCompletions,
            request_body: Bytes::from_static(b"0123456789abcdef"),
            body_len: 16,
            body_charge: None,
            content_events: 0,
            response_bytes: 40,
            pricing: None,
            settlements: Vec::new(),
            error: None,
            cache: None,
            hit_cost: None,
        }
    }

    /// Bodies are kept for estimates up to the budget; beyond it an event keeps only the
    /// body's length and is estimated by size; a dropped event gives its share back.
    #[test]
    fn bodies_beyond_the_budget_are_not_kept_and_are_estimated_by_size() {
        let budget = Arc::new(BodyBudget::default());
        let mut events: Vec<Finished> = (0..3)
            .map(|i| {
                let mut f = finished(&format!("r{i}"), None);
                budget.admit(&mut f, 40);
                f
            })
            .collect();
        assert_eq!(budget.held(), 32);
        assert_eq!(events[1].request_body.len(), 16);
        let over = &events[2];
        assert!(over.request_body.is_empty());
        assert_eq!(over.body_len, 16);
        let (prompt, _, estimated, _) = pricing::measure(over);
        assert!(estimated);
        assert_eq!(prompt, crate::quota::scopes::estimate_prompt_tokens(16));
        events.remove(0);
        assert_eq!(budget.held(), 16);
        drop(events);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_slow_estimate_holds_back_no_other_event_and_a_failed_one_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::backend::test_backend(dir.path());
        let rt = backend.handle().clone();
        let settings = QuotaSettings {
            on_store_error: OnStoreError::FailClosed,
            default_max_tokens: 16,
            slot_lease: Duration::from_secs(60),
            leases: false,
        };
        let limiter = Limiter::new(
            Arc::new(MemoryStore::new()),
            false,
            settings,
            backend.clone(),
        );
        let outcomes = IntCounterVec::new(Opts::new("events", "events"), &["outcome"]).unwrap();
        let meter = Meter::start_with(
            backend.clone(),
            limiter,
            dir.path().join("spill.jsonl"),
            outcomes,
            gated,
        );
        let stored = |db: DatabaseConnection| async move {
            usage_event::Entity::find()
                .order_by_asc(usage_event::Column::Id)
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.request_id)
                .collect::<Vec<_>>()
        };

        meter.record(finished("slow", None));
        meter.record(finished("estimated", None));
        meter.record(finished("broken", None));
        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 9,
            ..Default::default()
        };
        meter.record(finished("reported", Some(usage)));
        // Written at the next flush interval while `slow` is still being estimated.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let early = loop {
            let ids = rt.block_on(stored(backend.db.clone()));
            if ids.len() >= 3 || std::time::Instant::now() > deadline {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut sorted = early.clone();
        sorted.sort();
        assert_eq!(sorted, ["broken", "estimated", "reported"]);

        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        rt.block_on(meter.flush());
        let all = rt
            .block_on(usage_event::Entity::find().all(&backend.db))
            .unwrap();
        assert_eq!(all.len(), 4);
        let by_id = |id: &str| all.iter().find(|e| e.request_id == id).unwrap();
        assert_eq!(by_id("slow").prompt_tokens, 1);
        assert_eq!(by_id("reported").completion_tokens, 9);
        assert!(!by_id("reported").estimated);
        // The tokenizer's failure falls back to a token per four bytes of prompt.
        let broken = by_id("broken");
        assert!(broken.estimated);
        assert_eq!(broken.prompt_tokens, 4);
    }
}
