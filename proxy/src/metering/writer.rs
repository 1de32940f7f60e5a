//! The event writer: inserts batches of usage events; while the database is unreachable,
//! appends them to the spill file and replays it, in order, once the database is back.

use std::{path::PathBuf, time::Duration};

use prometheus::IntCounterVec;
use sea_orm_migration::sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tollgate_core::store::{entity::usage_event, usage::insert_events};

use crate::metering::{
    finished::Finished,
    journal::Keeper,
    spill::{append, read_spill_from, set_aside},
};
use crate::metrics::shared;

/// Most events in one insert.
pub const BATCH_SIZE: usize = 500;
/// How often spilled events are offered to the database again.
const REPLAY_INTERVAL: Duration = Duration::from_secs(2);
/// Batches waiting for the writer at which it falls behind: new batches then go to the
/// spill file (a sequential append) instead of waiting in memory, and are replayed once
/// the database keeps up again.
const BEHIND: usize = 8;
/// Longest stretch without a replay while the writer is behind: the database still gets
/// the spilled events when batches keep coming faster than they are written.
const MAX_WITHOUT_REPLAY: Duration = Duration::from_secs(10);

/// Rows for the writer, and who waits for them to be written (a shutdown flush).
pub struct Batch {
    pub rows: Vec<usage_event::Model>,
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
    /// The journal's sequence number of the last row (0: none).
    pub journaled: u64,
}

/// Writes batches in order, and tells the journal which events are kept once written.
pub async fn write_batches(
    mut batches: mpsc::Receiver<Batch>,
    mut writer: Writer,
    journal: Option<Keeper>,
) {
    while let Some(batch) = batches.recv().await {
        let behind = batches.len() >= BEHIND;
        writer.write(batch.rows, behind).await;
        if let (Some(journal), true) = (&journal, batch.journaled > 0) {
            journal.kept(batch.journaled);
        }
        if let Some(done) = batch.done {
            // What was spilled while the database fell behind is offered to it once more.
            if writer.spilled {
                writer.replay().await;
            }
            // A flush (at shutdown) leaves no journal behind for the next start.
            if let Some(journal) = &journal {
                journal.settled().await;
            }
            let _ = done.send(());
        }
    }
}

/// The event of a finished request.
pub fn event(
    f: &Finished,
    prompt: u64,
    completion: u64,
    estimated: bool,
    cost: i64,
) -> usage_event::Model {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    usage_event::Model {
        id: 0,
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
        error_code: f.error.as_ref().map(|(code, _)| (*code).to_string()),
        error_message: f
            .error
            .as_ref()
            .map(|(_, message)| message.chars().take(512).collect()),
        cache: f.cache.map(|c| c.as_str().to_string()),
    }
}

pub struct Writer {
    pub db: DatabaseConnection,
    pub spill: PathBuf,
    /// The spill file holds events not yet in the database: new ones queue behind them.
    pub spilled: bool,
    /// When a replay was last tried: while the database is away, new batches go straight
    /// to the file instead of each waiting out a failed insert.
    pub last_replay: Option<std::time::Instant>,
    /// How far into the spill file a replay that stopped had stored (the file is only
    /// appended to until it is emptied).
    pub replayed_to: u64,
    pub outcomes: IntCounterVec,
}

impl Writer {
    /// Writes a batch; `behind`: more batches wait, so it goes to the spill file.
    pub async fn write(&mut self, batch: Vec<usage_event::Model>, behind: bool) {
        let since = self.last_replay.map(|at| at.elapsed());
        let due = since.is_none_or(|s| s >= REPLAY_INTERVAL);
        let overdue = since.is_none_or(|s| s >= MAX_WITHOUT_REPLAY);
        if self.spilled && due && (!behind || overdue) {
            self.last_replay = Some(std::time::Instant::now());
            self.replay().await;
        }
        if batch.is_empty() {
            return;
        }
        if let Some(m) = shared::shared() {
            m.usage_batch.observe(batch.len() as f64);
        }
        if behind && !self.spilled {
            tracing::warn!(
                "the database falls behind the usage events: spilling them to {} until it \
                 catches up",
                self.spill.display()
            );
        }
        let tried = !self.spilled && !behind;
        if tried {
            match shared::database("usage_insert", insert(&self.db, &batch)).await {
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
        let count = rows.len();
        let appended = tokio::task::spawn_blocking(move || {
            let result = append(&path, &rows);
            (result, rows)
        })
        .await;
        let result = match appended {
            // The file failed while the database was not tried (the writer was behind):
            // the database takes the batch instead.
            Ok((Err(e), rows)) if !tried => {
                tracing::warn!("spilling usage events failed, writing them instead: {e}");
                match shared::database("usage_insert", insert(&self.db, &rows)).await {
                    Ok(()) => {
                        self.outcomes
                            .with_label_values(&["written"])
                            .inc_by(count as u64);
                        return;
                    }
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
            Ok((result, _)) => result,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        match result {
            Ok(()) => {
                self.spilled = true;
                self.outcomes
                    .with_label_values(&["spilled"])
                    .inc_by(count as u64);
                self.measure_spill();
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

    /// Reports the spill file's size.
    pub fn measure_spill(&self) {
        if let Some(m) = shared::shared() {
            let bytes = std::fs::metadata(&self.spill).map_or(0, |m| m.len());
            m.spill_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Inserts the spilled events in order, a batch at a time (a large file is never read
    /// whole), going on from where a replay that stopped had got; the file is emptied once
    /// all are stored.
    pub(super) async fn replay(&mut self) {
        let mut replayed = 0;
        loop {
            let (path, from) = (self.spill.clone(), self.replayed_to);
            let read =
                tokio::task::spawn_blocking(move || read_spill_from(&path, from, BATCH_SIZE))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            let (chunk, next) = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!("reading {} failed: {e}", self.spill.display());
                    return;
                }
            };
            if !chunk.events.is_empty()
                && let Err(e) = insert(&self.db, &chunk.events).await
            {
                tracing::debug!("replaying spilled usage events: database still unavailable: {e}");
                return;
            }
            if !chunk.unread.is_empty() {
                match set_aside(&self.spill, &chunk.unread) {
                    Ok(aside) => tracing::error!(
                        "{} spilled usage events are of a format this build does not read; kept in {}",
                        chunk.unread.len(),
                        aside.display()
                    ),
                    Err(e) => {
                        tracing::error!(
                            "setting aside spilled events of another format failed: {e}"
                        );
                        return;
                    }
                }
            }
            replayed += chunk.events.len();
            match next {
                Some(at) => self.replayed_to = at,
                None => break,
            }
        }
        if let Err(e) = std::fs::File::create(&self.spill) {
            tracing::error!("emptying {} failed: {e}", self.spill.display());
            return;
        }
        self.replayed_to = 0;
        if replayed > 0 {
            tracing::info!("replayed {replayed} spilled usage events");
            self.outcomes
                .with_label_values(&["replayed"])
                .inc_by(replayed as u64);
        }
        self.spilled = false;
        self.measure_spill();
    }
}

/// How long one insert may take before its batch goes to the spill file instead.
const INSERT_TIMEOUT: Duration = Duration::from_secs(3);

async fn insert(db: &DatabaseConnection, rows: &[usage_event::Model]) -> Result<(), String> {
    match tokio::time::timeout(INSERT_TIMEOUT, insert_events(db, rows)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {INSERT_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Opts;
    use sea_orm_migration::sea_orm::{EntityTrait, PaginatorTrait};

    use super::*;

    fn row(n: usize) -> usage_event::Model {
        crate::metering::test_event(&format!("ev_{n:032}"))
    }

    /// Batches that pile up behind the writer go to the spill file instead of waiting in
    /// memory, and reach the database all the same once it keeps up (by the flush at the
    /// latest), replayed a batch at a time.
    #[test]
    fn a_writer_that_falls_behind_spills_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::backend::test_backend(dir.path());
        let outcomes = IntCounterVec::new(Opts::new("events", "events"), &["outcome"]).unwrap();
        let writer = Writer {
            db: backend.db.clone(),
            spill: dir.path().join("usage-spill.jsonl"),
            spilled: false,
            last_replay: None,
            replayed_to: 0,
            outcomes: outcomes.clone(),
        };
        // Twelve batches already wait when the writer starts, then a flush; the first is
        // larger than a replay reads at once.
        let (tx, rx) = mpsc::channel(64);
        let (done, flushed) = tokio::sync::oneshot::channel();
        let mut n = 0;
        for i in 0..12 {
            let size = if i == 0 { BATCH_SIZE + 20 } else { 10 };
            let rows = (n..n + size).map(row).collect();
            n += size;
            tx.try_send(Batch {
                rows,
                done: None,
                journaled: 0,
            })
            .unwrap();
        }
        tx.try_send(Batch {
            rows: Vec::new(),
            done: Some(done),
            journaled: 0,
        })
        .unwrap();
        drop(tx);
        backend.handle().block_on(async {
            write_batches(rx, writer, None).await;
            flushed.await.unwrap();
        });
        assert!(outcomes.with_label_values(&["spilled"]).get() > 0);
        assert_eq!(
            outcomes.with_label_values(&["replayed"]).get()
                + outcomes.with_label_values(&["written"]).get(),
            n as u64
        );
        let stored = backend
            .handle()
            .block_on(usage_event::Entity::find().count(&backend.db))
            .unwrap();
        assert_eq!(stored, n as u64);
        let left = std::fs::metadata(dir.path().join("usage-spill.jsonl")).map_or(0, |m| m.len());
        assert_eq!(left, 0);
    }
}
