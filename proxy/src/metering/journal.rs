//! The usage journal: each event is appended to a local file — under traffic the thread
//! takes the events of every [`SYNC_INTERVAL`] at once, writes and syncs them (one
//! `fdatasync` for that interval) — while the event waits for its batch to reach the
//! database (up to a second). A crash — SIGKILL, a power cut — then loses at most the events
//! of the last interval or two and the requests still in flight. At start, what the journal holds goes to the spill file, whose
//! replay inserts it, skipping events the database already has: nothing counts twice.
//!
//! The journal is a few segment files; a segment is deleted once every event in it is in
//! the database or the spill file. Its lines are the spill file's.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use tollgate_core::store::entity::usage_event;

use crate::metering::spill;

/// How often the journal is synced: the most a crash loses of events already worked out.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(10);
/// Events in one segment before another is started.
const SEGMENT_EVENTS: u64 = 10_000;

enum Entry {
    /// An event's line, with its sequence number.
    Event(u64, Vec<u8>),
    /// Every event up to this sequence number is in the database or the spill file.
    Kept(u64),
    /// Answered once everything before it is done (a shutdown's flush waits for it).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The metering task's side of the journal.
pub struct Journal {
    tx: mpsc::Sender<Entry>,
    next: u64,
}

impl Journal {
    /// Starts the journal's thread, writing segments into `dir`.
    pub fn start(dir: PathBuf) -> std::io::Result<Journal> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tollgate-journal".into())
            .spawn(move || Segments::new(dir).run(&rx))?;
        Ok(Journal { tx, next: 1 })
    }

    /// Journals an event; answers its sequence number.
    pub fn append(&mut self, event: &usage_event::Model) -> u64 {
        let seq = self.next;
        self.next += 1;
        match spill::line(event) {
            Ok(line) => {
                let _ = self.tx.send(Entry::Event(seq, line));
            }
            Err(e) => tracing::error!("journaling a usage event failed: {e}"),
        }
        seq
    }

    /// A handle for the writer to say which events are kept.
    pub fn keeper(&self) -> Keeper {
        Keeper(self.tx.clone())
    }
}

/// Tells the journal that events are kept elsewhere.
#[derive(Clone)]
pub struct Keeper(mpsc::Sender<Entry>);

impl Keeper {
    pub fn kept(&self, upto: u64) {
        let _ = self.0.send(Entry::Kept(upto));
    }

    /// Waits until the journal has done what it was told so far.
    pub async fn settled(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.0.send(Entry::Barrier(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }
}

struct Open {
    path: PathBuf,
    file: BufWriter<File>,
    last: u64,
    events: u64,
}

/// The journal's thread: the segment being written and the closed ones.
struct Segments {
    dir: PathBuf,
    open: Option<Open>,
    /// Closed segments and the last sequence number in each.
    closed: VecDeque<(PathBuf, u64)>,
    kept: u64,
    /// Events were written since the last sync.
    unsynced: bool,
}

impl Segments {
    fn new(dir: PathBuf) -> Self {
        Segments {
            dir,
            open: None,
            closed: VecDeque::new(),
            kept: 0,
            unsynced: false,
        }
    }

    /// Idle, the thread waits for the first entry; busy, it takes what came every
    /// [`SYNC_INTERVAL`] rather than being woken for each event (a context switch per
    /// request, on the machine serving them).
    fn run(mut self, rx: &mpsc::Receiver<Entry>) {
        loop {
            match rx.recv() {
                Ok(entry) => self.take(entry),
                Err(mpsc::RecvError) => {
                    self.sync();
                    return;
                }
            }
            loop {
                std::thread::sleep(SYNC_INTERVAL);
                let mut busy = false;
                loop {
                    match rx.try_recv() {
                        Ok(entry) => {
                            busy = true;
                            self.take(entry);
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            self.sync();
                            return;
                        }
                    }
                }
                // What came in this interval is synced at its end: an event waits at most
                // about one interval, in the channel or unsynced.
                if self.unsynced {
                    self.sync();
                }
                if !busy {
                    break;
                }
            }
        }
    }

    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Event(seq, line) => self.write(seq, &line),
            Entry::Kept(upto) => self.keep(upto),
            Entry::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    fn write(&mut self, seq: u64, line: &[u8]) {
        if self.open.is_none() {
            let path = self.dir.join(format!("{seq:020}.jsonl"));
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    self.open = Some(Open {
                        path,
                        file: BufWriter::new(file),
                        last: seq,
                        events: 0,
                    });
                }
                Err(e) => {
                    tracing::error!("opening the usage journal {}: {e}", path.display());
                    return;
                }
            }
        }
        let Some(open) = &mut self.open else {
            return;
        };
        if let Err(e) = open.file.write_all(line) {
            tracing::error!("writing the usage journal: {e}");
        }
        open.last = seq;
        open.events += 1;
        self.unsynced = true;
        if open.events >= SEGMENT_EVENTS {
            self.close();
        }
    }

    fn sync(&mut self) {
        self.unsynced = false;
        if let Some(open) = &mut self.open {
            let synced = open
                .file
                .flush()
                .and_then(|()| open.file.get_ref().sync_data());
            if let Err(e) = synced {
                tracing::error!("syncing the usage journal: {e}");
            }
        }
    }

    /// Ends the open segment (synced); the next event starts another.
    fn close(&mut self) {
        self.sync();
        if let Some(open) = self.open.take() {
            self.closed.push_back((open.path, open.last));
        }
    }

    /// Deletes the segments whose events are all kept elsewhere.
    fn keep(&mut self, upto: u64) {
        self.kept = self.kept.max(upto);
        if self.open.as_ref().is_some_and(|o| o.last <= self.kept) {
            self.close();
        }
        while let Some((path, last)) = self.closed.front() {
            if *last > self.kept {
                break;
            }
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!("removing the usage journal {}: {e}", path.display());
            }
            self.closed.pop_front();
        }
    }
}

/// Moves what a journal left behind (a crash) into the spill file, for the writer to
/// replay; answers how many events. A line cut short by the crash is dropped.
pub fn recover(dir: &Path, spill_path: &PathBuf) -> std::io::Result<usize> {
    let mut segments: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    segments.sort();
    let mut moved = 0;
    for segment in segments {
        let mut lines = Vec::new();
        for line in BufReader::new(File::open(&segment)?).lines() {
            let line = line?;
            if serde_json::from_str::<serde_json::Value>(&line).is_ok() {
                lines.push(line);
            }
        }
        spill::append_lines(spill_path, &lines)?;
        moved += lines.len();
        std::fs::remove_file(&segment)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metering::test_event as event;

    /// Polls `done` for up to 10 s.
    fn wait_for(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn journaled(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            // A segment may go between listing and reading it.
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|text| text.lines().count())
            .sum()
    }

    #[test]
    fn events_are_synced_within_the_interval_and_dropped_once_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let mut journal = Journal::start(journal_dir.clone()).unwrap();
        let keeper = journal.keeper();
        let first = journal.append(&event("ev_1"));
        let second = journal.append(&event("ev_2"));
        // On disk before the batch is kept: a crash now loses nothing. (Waits poll rather
        // than sleep a fixed time, so a loaded machine cannot fail the test.)
        wait_for(|| journaled(&journal_dir) == 2);
        keeper.kept(first);
        std::thread::sleep(SYNC_INTERVAL * 5);
        assert_eq!(
            journaled(&journal_dir),
            2,
            "a segment goes only when all of it is kept"
        );
        keeper.kept(second);
        wait_for(|| journaled(&journal_dir) == 0);
        // What a crash leaves goes to the spill file, a torn last line dropped.
        let third = journal.append(&event("ev_3"));
        assert_eq!(third, 3);
        wait_for(|| journaled(&journal_dir) == 1);
        drop(journal);
        let segment = std::fs::read_dir(&journal_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(b"{\"v\":1,\"event_id\":\"ev_tor").unwrap();
        let spill_path = dir.path().join("spill.jsonl");
        assert_eq!(recover(&journal_dir, &spill_path).unwrap(), 1);
        assert_eq!(journaled(&journal_dir), 0);
        let spilled = spill::read_spill(&spill_path).unwrap().events;
        assert_eq!(spilled.len(), 1);
        assert_eq!(spilled[0].event_id, "ev_3");
    }
}
