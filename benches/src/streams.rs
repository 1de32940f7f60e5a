//! The `--streams N` probe: N slow streamed chat completions held open at once through a
//! proxy (the mock sends one token a second), to measure what an open stream costs in
//! resident memory. One thread drives every connection with non-blocking reads.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cpu;
use crate::procs;
use crate::scenarios::PATH;
use crate::targets::Target;

/// What holding the streams cost one proxy.
#[derive(Debug, Serialize)]
pub struct Held {
    pub target: &'static str,
    pub streams: usize,
    /// Streams that answered 200 and ended with `data: [DONE]`.
    pub completed: usize,
    /// Streams open (answer head received) at once, at most.
    pub open_at_once: usize,
    pub rss_before_mib: f64,
    /// The highest resident memory while the streams were held.
    pub rss_peak_mib: f64,
    /// A second after the last stream ended.
    pub rss_after_mib: f64,
    /// (peak − before) ÷ the streams open at once; `None` when the target did not hold
    /// most of them open at once (a response cache answers them at once), where the
    /// quotient would say nothing about a held stream.
    pub kib_per_stream: Option<f64>,
    /// CPU time of the proxy over the whole probe.
    pub cpu_s: f64,
    /// Streams that did not complete, by the status line they got (or how they ended).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, usize>,
    /// The start of one failed answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_sample: Option<String>,
}

impl Held {
    pub fn line(&self) -> String {
        let mut line = self.summary();
        for (how, n) in &self.failed {
            line.push_str(&format!("\n    {n} failed: {how}"));
        }
        if let Some(sample) = &self.failure_sample {
            line.push_str(&format!("\n    e.g. {sample:?}"));
        }
        line
    }

    fn summary(&self) -> String {
        format!(
            "{:<11} {}/{} completed, {} open at once, RSS {:.1} -> peak {:.1} -> after {:.1} MiB, {} per stream, CPU {:.2} s",
            self.target,
            self.completed,
            self.streams,
            self.open_at_once,
            self.rss_before_mib,
            self.rss_peak_mib,
            self.rss_after_mib,
            self.per_stream(),
            self.cpu_s
        )
    }

    /// The memory per held stream as reports show it.
    pub fn per_stream(&self) -> String {
        match self.kib_per_stream {
            Some(kib) => format!("{kib:.1} KiB"),
            None => "n/a (not held open)".to_string(),
        }
    }
}

/// One held stream's connection and what has been seen on it.
struct Conn {
    stream: TcpStream,
    /// The answer's head has arrived (status line read).
    opened: bool,
    ok: bool,
    done: bool,
    closed: bool,
    /// The end of what was read so far, so a marker split across reads is still found.
    tail: Vec<u8>,
    /// The start of the answer.
    head: Vec<u8>,
}

impl Conn {
    /// Reads what has arrived; false once nothing more will come.
    fn poll(&mut self, buf: &mut [u8]) -> bool {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.closed = true;
                    return false;
                }
                Ok(n) => {
                    if self.head.len() < HEAD_KEPT {
                        let room = (HEAD_KEPT - self.head.len()).min(n);
                        self.head.extend_from_slice(&buf[..room]);
                    }
                    self.tail.extend_from_slice(&buf[..n]);
                    if !self.opened && self.tail.len() >= 12 {
                        self.opened = true;
                        self.ok = self.tail.starts_with(b"HTTP/1.1 200");
                    }
                    if contains(&self.tail, b"data: [DONE]") {
                        self.done = true;
                        return false;
                    }
                    let keep = self.tail.len().saturating_sub(32);
                    self.tail.drain(..keep);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return false;
                }
            }
        }
    }
}

/// Bytes of each answer's start kept for the report of failures.
const HEAD_KEPT: usize = 600;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Opens `n` slow streams through `target`, reads them to their end, and measures its
/// resident memory before, at its peak and after.
pub fn hold(target: &mut Target, n: usize, tokens: u32) -> anyhow::Result<Held> {
    let pid = target.pid();
    let rss_before_mib = cpu::process_tree_rss_mib(pid);
    let cpu_before = cpu::process_tree_cpu(pid);
    let peak = cpu::RssPeak::start(pid);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"Tell a long story."}}],"max_tokens":{tokens},"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    let request = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\n\
         x-mock: tokens={tokens},itl=1s\r\ncontent-length: {}\r\n\r\n{body}",
        target.addr,
        target.auth,
        body.len()
    );
    let mut conns = Vec::with_capacity(n);
    let mut buf = vec![0u8; 16 * 1024];
    for i in 0..n {
        let mut stream = TcpStream::connect(target.addr)
            .with_context(|| format!("stream {i} of {n}: connecting to {}", target.name))?;
        stream.write_all(request.as_bytes())?;
        stream.set_nonblocking(true)?;
        conns.push(Conn {
            stream,
            opened: false,
            ok: false,
            done: false,
            closed: false,
            tail: Vec::new(),
            head: Vec::new(),
        });
        if i % 500 == 499 {
            procs::check_interrupted()?;
        }
    }
    // Until every stream ended (or clearly never will).
    let deadline = Instant::now() + Duration::from_secs(u64::from(tokens) + 120);
    let mut open_at_once = 0;
    let mut live: Vec<usize> = (0..n).collect();
    while !live.is_empty() && Instant::now() < deadline {
        procs::check_interrupted()?;
        live.retain(|&i| conns[i].poll(&mut buf));
        let open = live.iter().filter(|&&i| conns[i].opened).count();
        open_at_once = open_at_once.max(open);
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_peak_mib = peak.finish();
    let completed = conns.iter().filter(|c| c.ok && c.done).count();
    let mut failed = BTreeMap::new();
    let mut failure_sample = None;
    for c in conns.iter().filter(|c| !(c.ok && c.done)) {
        let text = String::from_utf8_lossy(&c.head);
        let how = match text.lines().next() {
            Some(status) if c.ok => format!("{status}, ended without [DONE]"),
            Some(status) if !status.is_empty() => status.to_string(),
            _ if c.closed => "closed without an answer".to_string(),
            _ => "no answer in time".to_string(),
        };
        *failed.entry(how).or_insert(0) += 1;
        if failure_sample.is_none() && !c.head.is_empty() {
            failure_sample = Some(text.into_owned());
        }
    }
    drop(conns);
    procs::sleep(Duration::from_secs(1))?;
    let rss_after_mib = cpu::process_tree_rss_mib(pid);
    let cpu_s = cpu::process_tree_cpu(pid)
        .saturating_sub(cpu_before)
        .as_secs_f64();
    target.check_running()?;
    Ok(Held {
        target: target.name,
        streams: n,
        completed,
        open_at_once,
        rss_before_mib,
        rss_peak_mib,
        rss_after_mib,
        kib_per_stream: (open_at_once * 10 >= n * 9)
            .then(|| (rss_peak_mib - rss_before_mib) * 1024.0 / open_at_once as f64),
        cpu_s,
        failed,
        failure_sample,
    })
}

/// Raises this process's open-file limit to at least `want` (the hard limit too, when
/// allowed), so that it and every process it starts can hold the probe's connections.
/// Answers the soft limit in effect.
pub fn raise_descriptor_limit(want: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok(soft);
    }
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}
