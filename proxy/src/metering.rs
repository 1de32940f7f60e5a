//! Usage metering: one event per finished request, built off the request path. `logging`
//! hands a [`Finished`] record to a bounded channel; the metering task (on the store
//! runtime) works out tokens — the upstream's usage, or an estimate marked as such — and
//! cost, settles the quota reservation, and batches events into multi-row inserts. When the
//! database is unreachable, batches go to an append-only spill file, replayed in order when
//! it is back; inserts ignore event ids already stored, so a replay never counts twice.

use std::{
    collections::VecDeque,
    io::{BufRead, Write},
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prometheus::IntCounterVec;
use sea_orm_migration::sea_orm::{
    ActiveValue::Set, DatabaseConnection, EntityTrait, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinSet};
use tollgate_core::{config::Pricing, store::entity::usage_event, usage::Usage};

use crate::{
    backend::Backend,
    endpoints::Endpoint,
    estimate,
    limiter::{Limiter, Settlement},
    quota::Usage as QuotaUsage,
};

/// Events waiting for the metering task; far more than a flush interval's worth.
const CHANNEL_CAPACITY: usize = 100_000;
const BATCH_SIZE: usize = 500;
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Usage estimates worked out at once.
const MAX_ESTIMATING: usize = 4;
/// Events waiting for an estimate before the metering task takes no more from its channel.
const MAX_WAITING_ESTIMATE: usize = 10_000;
/// How often spilled events are offered to the database again.
const REPLAY_INTERVAL: Duration = Duration::from_secs(2);

/// Everything known about a request when it ends.
pub struct Finished {
    pub event_id: String,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
    pub key_id: Option<i64>,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub model: String,
    pub deployment: String,
    pub status: u16,
    pub latency_ms: u32,
    pub ttft_ms: Option<u32>,
    /// What the upstream reported.
    pub usage: Option<Usage>,
    /// Whether an upstream answered with success (else nothing was generated or billed).
    pub upstream_ok: bool,
    pub streamed: bool,
    pub endpoint: Endpoint,
    /// The request as sent upstream, for estimating its prompt when usage is missing.
    pub request_body: Bytes,
    pub content_events: u64,
    pub response_bytes: u64,
    pub pricing: Option<Pricing>,
    /// Quota reservations to settle once the usage is known.
    pub settlements: Vec<Settlement>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// A stored usage event, also the line format of the spill file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventRow {
    pub event_id: String,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
    pub key_id: Option<i64>,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub model: String,
    pub deployment: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micro_usd: i64,
    pub status: i32,
    pub latency_ms: i32,
    pub ttft_ms: Option<i32>,
    pub estimated: bool,
}

/// Tokens and cost of a finished request.
pub fn measure(f: &Finished) -> Measured {
    let (prompt, completion, estimated) = match f.usage {
        Some(u) => (u.prompt_tokens, u.completion_tokens, false),
        None if f.upstream_ok => (
            estimate::prompt_tokens(f.endpoint, &f.request_body),
            estimate::completion_tokens(f.content_events, f.response_bytes, f.streamed),
            true,
        ),
        None => (0, 0, false),
    };
    priced(f, prompt, completion, estimated)
}

/// The tokens with their cost from the route's price table.
fn priced(f: &Finished, prompt: u64, completion: u64, estimated: bool) -> Measured {
    let cost = f.pricing.map_or(0, |p| p.cost(prompt, completion));
    (prompt, completion, estimated, cost)
}

/// What the metering task is sent.
enum Message {
    Finished(Box<Finished>),
    /// Write everything received so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side, held by the gateway.
pub struct Meter {
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
        Self::start_with(backend, limiter, spill, outcomes, measure)
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
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        // Events spilled before a restart are replayed first.
        let spilled = std::fs::metadata(&spill).is_ok_and(|m| m.len() > 0);
        let writer = Writer {
            db: backend.db.clone(),
            spill,
            spilled,
            last_replay: None,
            outcomes: outcomes.clone(),
        };
        backend
            .handle()
            .spawn(run(rx, writer, limiter.clone(), estimate));
        Meter {
            tx,
            outcomes,
            limiter,
            runtime: backend.handle().clone(),
        }
    }

    /// Hands a finished request over; never waits.
    pub fn record(&self, finished: Finished) {
        if let Err(e) = self.tx.try_send(Message::Finished(Box::new(finished))) {
            // Only if the metering task is 100,000 events behind or gone.
            self.outcomes.with_label_values(&["dropped"]).inc();
            tracing::error!("usage event dropped: the metering queue is full or closed");
            // The request's quota must still be released (its concurrency slot above all):
            // settled as if it used all it reserved, which never undercounts.
            if let Message::Finished(finished) = e.into_inner() {
                for s in finished.settlements {
                    let limiter = self.limiter.clone();
                    self.runtime
                        .spawn(async move { limiter.settle_reserved(&s).await });
                }
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

/// Tokens (prompt, completion), whether they were estimated, and cost.
type Measured = (u64, u64, bool, i64);

/// Batches finished requests for the writer. Quota settlement and the tokenizer never wait
/// for the database: a slow or unreachable database delays only the writer task. Estimates
/// run apart, a few at once: a slow one (a multi-MiB prompt) holds back neither the others
/// nor the events that need none.
async fn run(
    mut rx: mpsc::Receiver<Message>,
    writer: Writer,
    limiter: Arc<Limiter>,
    estimate: fn(&Finished) -> Measured,
) {
    let (batches, writer_rx) = mpsc::channel::<Batch>(64);
    tokio::spawn(write_batches(writer_rx, writer));
    let mut rows = Rows {
        batch: Vec::with_capacity(BATCH_SIZE),
        batches,
        limiter,
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
                    let _ = rows.batches.try_send(Batch { rows: Vec::new(), done: None });
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

/// The crude estimate when the tokenizer failed: a token per four bytes of prompt.
fn by_size(f: &Finished) -> Measured {
    let prompt = crate::limiter::estimate_prompt_tokens(f.request_body.len());
    let completion = estimate::completion_tokens(f.content_events, f.response_bytes, f.streamed);
    priced(f, prompt, completion, true)
}

/// The batch being gathered, where batches go, and the quotas to settle.
struct Rows {
    batch: Vec<EventRow>,
    batches: mpsc::Sender<Batch>,
    limiter: Arc<Limiter>,
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
            tokio::spawn(async move { limiter.settle(&s.admitted, used).await });
        }
        self.batch.push(row(f, prompt, completion, estimated, cost));
        if self.batch.len() >= BATCH_SIZE {
            self.send(None).await;
        }
    }

    /// Hands the batch to the writer.
    async fn send(&mut self, done: Option<tokio::sync::oneshot::Sender<()>>) {
        let rows = std::mem::take(&mut self.batch);
        let _ = self.batches.send(Batch { rows, done }).await;
    }
}

/// Rows for the writer, and who waits for them to be written (a shutdown flush).
struct Batch {
    rows: Vec<EventRow>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn write_batches(mut batches: mpsc::Receiver<Batch>, mut writer: Writer) {
    while let Some(batch) = batches.recv().await {
        writer.write(batch.rows).await;
        if let Some(done) = batch.done {
            let _ = done.send(());
        }
    }
}

fn row(f: &Finished, prompt: u64, completion: u64, estimated: bool, cost: i64) -> EventRow {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    EventRow {
        event_id: f.event_id.clone(),
        request_id: f.request_id.clone(),
        occurred_at: f.occurred_at,
        key_id: f.key_id,
        user_id: f.user_id,
        team_id: f.team_id,
        model: f.model.chars().take(256).collect(),
        deployment: f.deployment.chars().take(64).collect(),
        prompt_tokens: clamp(prompt),
        completion_tokens: clamp(completion),
        cost_micro_usd: cost,
        status: i32::from(f.status),
        latency_ms: i32::try_from(f.latency_ms).unwrap_or(i32::MAX),
        ttft_ms: f.ttft_ms.map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
        estimated,
    }
}

struct Writer {
    db: DatabaseConnection,
    spill: PathBuf,
    /// The spill file holds events not yet in the database: new ones queue behind them.
    spilled: bool,
    /// When a replay was last tried: while the database is away, new batches go straight
    /// to the file instead of each waiting out a failed insert.
    last_replay: Option<std::time::Instant>,
    outcomes: IntCounterVec,
}

impl Writer {
    async fn write(&mut self, batch: Vec<EventRow>) {
        let due = self
            .last_replay
            .is_none_or(|at| at.elapsed() >= REPLAY_INTERVAL);
        if self.spilled && due {
            self.last_replay = Some(std::time::Instant::now());
            self.replay().await;
        }
        if batch.is_empty() {
            return;
        }
        if !self.spilled {
            match insert(&self.db, &batch).await {
                Ok(()) => {
                    self.outcomes
                        .with_label_values(&["written"])
                        .inc_by(batch.len() as u64);
                    return;
                }
                Err(e) => tracing::warn!(
                    "writing {} usage events failed, spilling them to {}: {e}",
                    batch.len(),
                    self.spill.display()
                ),
            }
        }
        let (path, rows) = (self.spill.clone(), batch);
        let appended = tokio::task::spawn_blocking(move || {
            let result = append(&path, &rows);
            (result, rows.len())
        })
        .await;
        let (result, count) = match appended {
            Ok(done) => done,
            Err(e) => (Err(std::io::Error::other(e.to_string())), 0),
        };
        match result {
            Ok(()) => {
                self.spilled = true;
                self.outcomes
                    .with_label_values(&["spilled"])
                    .inc_by(count as u64);
            }
            Err(e) => {
                self.outcomes
                    .with_label_values(&["dropped"])
                    .inc_by(count as u64);
                tracing::error!(
                    "{count} usage events lost: spilling to {} failed: {e}",
                    self.spill.display()
                );
            }
        }
    }

    /// Inserts the spilled events in order; the file is emptied once all are stored.
    async fn replay(&mut self) {
        let path = self.spill.clone();
        let read = tokio::task::spawn_blocking(move || read_spill(&path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("reading {} failed: {e}", self.spill.display());
                return;
            }
        };
        for chunk in rows.chunks(BATCH_SIZE) {
            if let Err(e) = insert(&self.db, chunk).await {
                tracing::debug!("replaying spilled usage events: database still unavailable: {e}");
                return;
            }
        }
        if let Err(e) = std::fs::File::create(&self.spill) {
            tracing::error!("emptying {} failed: {e}", self.spill.display());
            return;
        }
        if !rows.is_empty() {
            tracing::info!("replayed {} spilled usage events", rows.len());
            self.outcomes
                .with_label_values(&["replayed"])
                .inc_by(rows.len() as u64);
        }
        self.spilled = false;
    }
}

/// How long one insert may take before its batch goes to the spill file instead.
const INSERT_TIMEOUT: Duration = Duration::from_secs(3);

async fn insert(db: &DatabaseConnection, rows: &[EventRow]) -> Result<(), String> {
    match tokio::time::timeout(INSERT_TIMEOUT, insert_rows(db, rows)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {INSERT_TIMEOUT:?}")),
    }
}

async fn insert_rows(
    db: &DatabaseConnection,
    rows: &[EventRow],
) -> Result<(), sea_orm_migration::sea_orm::DbErr> {
    let models = rows.iter().map(|r| usage_event::ActiveModel {
        event_id: Set(r.event_id.clone()),
        request_id: Set(r.request_id.clone()),
        occurred_at: Set(r.occurred_at),
        key_id: Set(r.key_id),
        user_id: Set(r.user_id),
        team_id: Set(r.team_id),
        model: Set(r.model.clone()),
        deployment: Set(r.deployment.clone()),
        prompt_tokens: Set(r.prompt_tokens),
        completion_tokens: Set(r.completion_tokens),
        cost_micro_usd: Set(r.cost_micro_usd),
        status: Set(r.status),
        latency_ms: Set(r.latency_ms),
        ttft_ms: Set(r.ttft_ms),
        estimated: Set(r.estimated),
        ..Default::default()
    });
    usage_event::Entity::insert_many(models)
        .on_conflict(
            OnConflict::column(usage_event::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

fn append(path: &PathBuf, rows: &[EventRow]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut text, row)?;
        text.push(b'\n');
    }
    file.write_all(&text)?;
    file.sync_data()
}

fn read_spill(path: &PathBuf) -> std::io::Result<Vec<EventRow>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut rows = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(row) => rows.push(row),
            // A line cut short by a crash mid-write: the rest of the file is still good.
            Err(e) => tracing::warn!("skipping a damaged spilled usage event: {e}"),
        }
    }
    Ok(rows)
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

    use super::*;
    use crate::quota::MemoryStore;

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
            content_events: 0,
            response_bytes: 40,
            pricing: None,
            settlements: Vec::new(),
        }
    }

    #[test]
    fn a_slow_estimate_holds_back_no_other_event_and_a_failed_one_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let backend = Arc::new(Backend::start(&url, None).unwrap());
        let rt = backend.handle().clone();
        rt.block_on(crate::store::migrate(&backend.db)).unwrap();
        let settings = QuotaSettings {
            on_store_error: OnStoreError::FailClosed,
            default_max_tokens: 16,
            slot_lease: Duration::from_secs(60),
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
