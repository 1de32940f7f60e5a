//! The spill file: usage events the database could not take, one JSON line each, appended
//! and synced before the batch counts as kept. Each line carries the format's version
//! (`"v"`); lines without one were written before the version existed and read as 1. A
//! line of a format this build does not know (a newer build's, after a downgrade) is not
//! dropped: it is set aside in `<file>.unread`, for a build that reads it.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tollgate_core::store::entity::usage_event;

use crate::rfc3339::{self, Fraction};

/// The version of the line format this build writes and reads.
const FORMAT: u32 = 1;

/// The line's form by serde, which [`line`] writes by hand.
#[cfg(test)]
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

/// An event as one line of the format this build writes, newline included. Written field
/// by field (each value by `serde_json`, the timestamp as chrono's serde form writes it):
/// the same bytes as serializing the event, at a quarter of the instructions (the
/// flattened struct and chrono's piecewise `collect_str` were most of a request's
/// journaling).
pub fn line(row: &usage_event::Model) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"v\":");
    serde_json::to_writer(&mut out, &FORMAT)?;
    value(&mut out, "event_id", &row.event_id)?;
    value(&mut out, "request_id", &row.request_id)?;
    out.extend_from_slice(b",\"occurred_at\":\"");
    let at = row.occurred_at;
    let written = u64::try_from(at.timestamp()).is_ok_and(|secs| {
        rfc3339::write(
            &mut out,
            secs,
            at.timestamp_subsec_nanos(),
            Fraction::Shortest,
        )
    });
    if written {
        out.push(b'"');
    } else {
        out.truncate(out.len() - 1);
        serde_json::to_writer(&mut out, &at)?;
    }
    value(&mut out, "key_id", &row.key_id)?;
    value(&mut out, "user_id", &row.user_id)?;
    value(&mut out, "team_id", &row.team_id)?;
    value(&mut out, "model", &row.model)?;
    value(&mut out, "deployment", &row.deployment)?;
    value(&mut out, "prompt_tokens", &row.prompt_tokens)?;
    value(&mut out, "completion_tokens", &row.completion_tokens)?;
    value(&mut out, "cost_micro_usd", &row.cost_micro_usd)?;
    value(&mut out, "status", &row.status)?;
    value(&mut out, "latency_ms", &row.latency_ms)?;
    value(&mut out, "ttft_ms", &row.ttft_ms)?;
    value(&mut out, "estimated", &row.estimated)?;
    value(&mut out, "error_code", &row.error_code)?;
    value(&mut out, "error_message", &row.error_message)?;
    value(&mut out, "cache", &row.cache)?;
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// `,"name":value`.
fn value<T: Serialize>(out: &mut Vec<u8>, name: &str, value: &T) -> serde_json::Result<()> {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(out, value)
}

pub fn append(path: &PathBuf, rows: &[usage_event::Model]) -> std::io::Result<()> {
    let mut text = Vec::new();
    for row in rows {
        text.extend(line(row)?);
    }
    append_bytes(path, &text)
}

/// Appends lines as they are (from the usage journal), synced.
pub fn append_lines(path: &PathBuf, lines: &[String]) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    append_bytes(path, (lines.join("\n") + "\n").as_bytes())
}

fn append_bytes(path: &PathBuf, text: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    // A line cut short by a crash must not swallow the first line written after it.
    if ends_mid_line(&mut file)? {
        file.write_all(b"\n")?;
    }
    file.write_all(text)?;
    file.sync_data()
}

fn ends_mid_line(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// What a spill file holds: the events this build reads, and the lines of other formats.
#[derive(Default)]
pub struct Spilled {
    pub events: Vec<usage_event::Model>,
    pub unread: Vec<String>,
}

#[cfg(test)]
pub fn read_spill(path: &PathBuf) -> std::io::Result<Spilled> {
    Ok(read_spill_from(path, 0, usize::MAX)?.0)
}

/// Reads at most `max` events from byte `offset` on; answers them with the offset after
/// the last line read (`None` at the end of the file), so that a large file is replayed a
/// batch at a time.
pub fn read_spill_from(
    path: &PathBuf,
    offset: u64,
    max: usize,
) -> std::io::Result<(Spilled, Option<u64>)> {
    use std::io::{Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Spilled::default(), None));
        }
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(file);
    let mut spilled = Spilled::default();
    let mut at = offset;
    let mut line = Vec::new();
    while spilled.events.len() < max {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok((spilled, None));
        }
        at += read as u64;
        // A line cut short by a crash mid-write may end inside a character.
        let Ok(text) = std::str::from_utf8(&line) else {
            tracing::warn!("skipping a damaged spilled usage event: not UTF-8");
            continue;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LineIn>(text) {
            Ok(parsed) if parsed.v == FORMAT => spilled.events.push(parsed.event),
            Ok(_) => spilled.unread.push(text.to_string()),
            // A line cut short by a crash mid-write: the rest of the file is still good.
            Err(e) => tracing::warn!("skipping a damaged spilled usage event: {e}"),
        }
    }
    Ok((spilled, Some(at)))
}

/// Keeps lines of another format in `<file>.unread`, before the spill file is emptied.
pub fn set_aside(path: &Path, lines: &[String]) -> std::io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".unread");
    let aside = PathBuf::from(aside);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)?;
    file.write_all((lines.join("\n") + "\n").as_bytes())?;
    file.sync_data()?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line cut short by a crash (mid-character, even) is skipped, and the lines after
    /// it, appended later, are read; a file read in chunks gives every event once.
    #[test]
    fn a_damaged_line_loses_only_itself_and_chunks_cover_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        let events: Vec<_> = (0..5)
            .map(|i| crate::metering::test_event(&format!("ev_{i}")))
            .collect();
        append(&path, &events[..2]).unwrap();
        let mut cut = line(&events[2]).unwrap();
        cut.truncate(cut.len() / 2);
        cut.extend_from_slice("é".as_bytes().get(..1).unwrap());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&cut)
            .unwrap();
        append(&path, &events[3..]).unwrap();
        let mut ids = Vec::new();
        let mut offset = Some(0);
        while let Some(from) = offset {
            let (chunk, next) = read_spill_from(&path, from, 2).unwrap();
            ids.extend(chunk.events.into_iter().map(|e| e.event_id));
            offset = next;
        }
        assert_eq!(ids, ["ev_0", "ev_1", "ev_3", "ev_4"]);
    }

    #[test]
    fn a_line_is_the_bytes_serializing_the_event_makes() {
        let mut events = Vec::new();
        for (secs, nanos) in [
            (1_796_611_141, 0),
            (1_796_611_141, 5_000_000),
            (1_796_611_141, 123_456_000),
            (1_796_611_141, 1),
            (951_782_400, 999_999_999),
            // Before 1970: chrono's own formatter.
            (-86_401, 250_000_000),
        ] {
            let mut event = crate::metering::test_event("ev_1");
            event.occurred_at = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
            event.key_id = Some(3);
            event.team_id = Some(9);
            events.push(event);
        }
        let mut odd = crate::metering::test_event("ev_\"2\"\\ \u{1}é");
        odd.key_id = None;
        odd.user_id = Some(-4);
        odd.ttft_ms = Some(3);
        odd.estimated = true;
        odd.error_code = Some("rate_limit_exceeded".into());
        odd.error_message = Some("line\nbreak \"quoted\" \u{7f} \u{1F600}".into());
        odd.cache = Some("hit".into());
        events.push(odd);
        for event in &events {
            let mut expected = serde_json::to_vec(&LineOut { v: FORMAT, event }).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line(event).unwrap()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn lines_round_trip_and_older_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        // As builds before the format's version wrote it.
        let old = r#"{"event_id":"ev_1","request_id":"r1","occurred_at":"2026-12-01T00:00:00Z","key_id":3,"user_id":null,"team_id":null,"model":"m","deployment":"d","prompt_tokens":5,"completion_tokens":7,"cost_micro_usd":11,"status":200,"latency_ms":12,"ttft_ms":null,"estimated":false}"#;
        let newer = old.replace(r#""event_id":"ev_1""#, r#""v":2,"event_id":"ev_9""#);
        std::fs::write(&path, format!("{old}\n{newer}\n")).unwrap();
        let Spilled {
            events: mut rows,
            unread,
        } = read_spill(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(unread.len(), 1, "a line of an unknown format is kept");
        assert_eq!(unread[0], newer);
        let aside = set_aside(&path, &unread).unwrap();
        assert_eq!(std::fs::read_to_string(aside).unwrap(), newer + "\n");
        assert_eq!(
            (rows[0].event_id.as_str(), rows[0].cost_micro_usd),
            ("ev_1", 11)
        );

        rows[0].event_id = "ev_2".into();
        append(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with(r#"{"v":1,"#) && !last.contains(r#""id""#));
        let read = read_spill(&path).unwrap().events;
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], rows[0]);
    }
}
