//! The spill file: usage events the database could not take, one JSON line each, appended
//! and synced before the batch counts as kept. Each line carries the format's version
//! (`"v"`); lines without one were written before the version existed and read as 1.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};
use tollgate_core::store::entity::usage_event;

/// The version of the line format this build writes and reads.
const FORMAT: u32 = 1;

#[derive(Serialize)]
struct LineOut<'a> {
    v: u32,
    #[serde(flatten)]
    event: &'a usage_event::Model,
}

#[derive(Deserialize)]
struct LineIn {
    #[serde(default = "first_format")]
    v: u32,
    #[serde(flatten)]
    event: usage_event::Model,
}

fn first_format() -> u32 {
    1
}

pub fn append(path: &PathBuf, rows: &[usage_event::Model]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = Vec::new();
    for row in rows {
        serde_json::to_writer(
            &mut text,
            &LineOut {
                v: FORMAT,
                event: row,
            },
        )?;
        text.push(b'\n');
    }
    file.write_all(&text)?;
    file.sync_data()
}

pub fn read_spill(path: &PathBuf) -> std::io::Result<Vec<usage_event::Model>> {
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
        match serde_json::from_str::<LineIn>(&line) {
            Ok(line) if line.v == FORMAT => rows.push(line.event),
            Ok(line) => tracing::error!(
                "skipping a spilled usage event of format {} (this build reads {FORMAT})",
                line.v
            ),
            // A line cut short by a crash mid-write: the rest of the file is still good.
            Err(e) => tracing::warn!("skipping a damaged spilled usage event: {e}"),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_older_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        // As builds before the format's version wrote it.
        let old = r#"{"event_id":"ev_1","request_id":"r1","occurred_at":"2026-12-01T00:00:00Z","key_id":3,"user_id":null,"team_id":null,"model":"m","deployment":"d","prompt_tokens":5,"completion_tokens":7,"cost_micro_usd":11,"status":200,"latency_ms":12,"ttft_ms":null,"estimated":false}"#;
        let newer = old.replace(r#""event_id":"ev_1""#, r#""v":2,"event_id":"ev_9""#);
        std::fs::write(&path, format!("{old}\n{newer}\n")).unwrap();
        let mut rows = read_spill(&path).unwrap();
        assert_eq!(rows.len(), 1, "a line of an unknown format is skipped");
        assert_eq!(
            (rows[0].event_id.as_str(), rows[0].cost_micro_usd),
            ("ev_1", 11)
        );

        rows[0].event_id = "ev_2".into();
        append(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with(r#"{"v":1,"#) && !last.contains(r#""id""#));
        let read = read_spill(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], rows[0]);
    }
}
