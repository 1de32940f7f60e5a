//! A target's own cost during a measured run, read from `/proc`: CPU time (user + system,
//! its worker processes included, as nginx has) and resident memory.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times: Linux reports them in USER_HZ, which
/// is 100 on every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Parent pid and user + system ticks from one `/proc/<pid>/stat` line. The command name
/// may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15), numbered from pid = 1.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU time used so far by `pid` and its children (all threads of each).
pub fn process_tree_cpu(pid: u32) -> Duration {
    let mut ticks = 0;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    for entry in entries.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((ppid, t)) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        if id == pid || ppid == pid {
            ticks += t;
        }
    }
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)
}

/// Resident memory of `pid` and its children, in MiB.
pub fn process_tree_rss_mib(pid: u32) -> f64 {
    let rss_kib = |p: u32| {
        fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let children = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&id| {
            fs::read_to_string(format!("/proc/{id}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
                .is_some_and(|(ppid, _)| ppid == pid)
        });
    let kib: u64 = std::iter::once(pid).chain(children).map(rss_kib).sum();
    kib as f64 / 1024.0
}

/// The highest resident memory of a process tree while a run goes on, sampled every 100 ms
/// on a thread of its own.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<f64>,
}

impl RssPeak {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = process_tree_rss_mib(pid);
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                peak = peak.max(process_tree_rss_mib(pid));
            }
            peak
        });
        Self { stop, sampler }
    }

    /// The peak, including one last sample taken now.
    pub fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "4242 (tollgate worker) S 4200 4242 4200 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 3 0 1 1 1";
        assert_eq!(parse_stat(line), Some((4200, 175)));
    }

    #[test]
    fn this_process_uses_some_cpu_and_memory() {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_tree_cpu(std::process::id()) > Duration::ZERO);
        assert!(process_tree_rss_mib(std::process::id()) > 1.0);
    }
}
