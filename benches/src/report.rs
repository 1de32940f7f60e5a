//! Results of a whole run and their three renderings: a terminal table per scenario, a
//! Markdown section for benches/RESULTS.md, and the full JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load::RunStats;
use crate::machine::Machine;

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub scenarios: Vec<ScenarioResult>,
    /// Memory once more, `--settled-after` past the last load scenario.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<Settled>,
    /// The `--streams N` probe per proxy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<crate::streams::Held>,
}

/// A target's memory a while after the last load, against its idle memory.
#[derive(Debug, Serialize)]
pub struct Settled {
    pub target: &'static str,
    pub after_s: u64,
    pub idle_rss_mib: f64,
    pub rss_mib: f64,
}

impl Settled {
    pub fn line(&self) -> String {
        format!(
            "{:<12} {:.1} → {:.1} MiB ({:.2}x idle)",
            self.target,
            self.idle_rss_mib,
            self.rss_mib,
            self.rss_mib / self.idle_rss_mib
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub rate: u32,
    pub rate_mode: String,
    pub tollgate_threads: usize,
    pub nginx_workers: Option<usize>,
    pub rounds: usize,
    pub tollgate_log: String,
    /// Example command lines, body and key elided.
    pub commands: Vec<String>,
    /// The nginx config used, its temp dir written as PREFIX.
    pub nginx_conf: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub name: &'static str,
    pub title: String,
    /// The request rate of a fixed-rate scenario.
    pub rate: Option<u32>,
    pub targets: Vec<TargetResult>,
    pub comparisons: Vec<Comparison>,
}

/// One target in one scenario: the median over its rounds, and every round.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    pub target: &'static str,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// The target's own CPU time (user + system, its worker processes included) over the
    /// measured run, divided by the 2xx answers: the figure that stays stable on a shared
    /// machine where req/s does not.
    pub cpu_ms_per_request: Option<f64>,
    /// Resident memory before any load, the highest sampled during a measured run, and a
    /// second after one ended (highest round of each).
    pub rss_idle_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_after_mib: f64,
    /// Summed over the rounds.
    pub ok: u64,
    pub non_2xx: u64,
    pub transport_errors: u64,
    pub runs: Vec<TargetRun>,
}

#[derive(Debug, Serialize)]
pub struct TargetRun {
    #[serde(flatten)]
    pub stats: RunStats,
    /// Chat requests the mock upstream received during the run, and streams it saw aborted.
    pub upstream_requests: u64,
    pub upstream_streams_aborted: u64,
    /// Commands Redis ran during the run (its `INFO commandstats` calls, after minus
    /// before), recorded for the governed target.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redis_commands: BTreeMap<String, u64>,
    /// Median bare round trip to that Redis (`PING`, plain socket, every 20 ms) during a
    /// fixed-rate governed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_round_trip_ms: Option<f64>,
    /// The target's CPU time during the run per 2xx answer, in ms.
    pub cpu_ms_per_request: Option<f64>,
    /// The target's resident memory at its highest during the run (sampled every 100 ms),
    /// and a second after the run ended.
    pub rss_peak_mib: f64,
    pub rss_after_mib: f64,
    /// Tollgate's own overhead p50 during the run, from its `tollgate_overhead_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_p50_ms: Option<f64>,
}

/// `target` against `baseline`: throughput ratio and added latency.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub target: &'static str,
    pub baseline: &'static str,
    pub throughput_ratio: f64,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    /// CPU per request of the target over the baseline's, and their difference in ms.
    pub cpu_ratio: Option<f64>,
    pub added_cpu_ms: Option<f64>,
}

impl TargetResult {
    pub fn from_runs(target: &'static str, rss_idle_mib: f64, runs: Vec<TargetRun>) -> Self {
        let mid = |f: fn(&RunStats) -> f64| median(runs.iter().map(|r| f(&r.stats)).collect());
        Self {
            target,
            rps: mid(|s| s.rps),
            p50_ms: mid(|s| s.p50_ms),
            p90_ms: mid(|s| s.p90_ms),
            p99_ms: mid(|s| s.p99_ms),
            cpu_ms_per_request: {
                let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_ms_per_request).collect();
                (!cpu.is_empty()).then(|| median(cpu))
            },
            rss_idle_mib,
            rss_peak_mib: runs.iter().map(|r| r.rss_peak_mib).fold(0.0, f64::max),
            rss_after_mib: runs.iter().map(|r| r.rss_after_mib).fold(0.0, f64::max),
            ok: runs.iter().map(|r| r.stats.ok).sum(),
            non_2xx: runs.iter().map(|r| r.stats.non_2xx).sum(),
            transport_errors: runs.iter().map(|r| r.stats.transport_errors).sum(),
            runs,
        }
    }

    pub fn failures(&self) -> u64 {
        self.non_2xx + self.transport_errors
    }

    /// Redis commands per 2xx answer over all rounds, e.g. `evalsha 2.00`.
    fn redis_per_request(&self) -> Option<String> {
        let mut total: BTreeMap<&str, u64> = BTreeMap::new();
        for run in &self.runs {
            for (cmd, n) in &run.redis_commands {
                *total.entry(cmd).or_default() += n;
            }
        }
        let ok: u64 = self.runs.iter().map(|r| r.stats.ok).sum();
        if total.is_empty() || ok == 0 {
            return None;
        }
        // `info` and `ping` are the harness's own; commands below 0.005 a request are
        // stragglers.
        let per_request = |n: u64| n as f64 / ok as f64;
        let parts: Vec<String> = total
            .iter()
            .filter(|(cmd, n)| !["info", "ping"].contains(cmd) && per_request(**n) >= 0.005)
            .map(|(cmd, n)| format!("{cmd} {:.2}", per_request(*n)))
            .collect();
        Some(parts.join(", "))
    }

    /// The median over the rounds of the bare Redis round trip timed beside them.
    fn redis_round_trip_ms(&self) -> Option<f64> {
        let times: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.redis_round_trip_ms)
            .collect();
        (!times.is_empty()).then(|| median(times))
    }
}

impl ScenarioResult {
    pub fn new(
        name: &'static str,
        title: String,
        rate: Option<u32>,
        targets: Vec<TargetResult>,
    ) -> Self {
        let find = |n: &str| targets.iter().find(|t| t.target == n);
        let mut comparisons = Vec::new();
        for (target, baseline) in [
            ("passthrough", "direct"),
            ("governed", "direct"),
            ("gov-slots", "direct"),
            ("floor", "direct"),
            ("nginx", "direct"),
            ("passthrough", "floor"),
            ("governed", "floor"),
            ("gov-slots", "floor"),
            ("passthrough", "nginx"),
            ("governed", "passthrough"),
            ("gov-slots", "passthrough"),
            ("routed", "direct"),
            ("routed", "passthrough"),
            ("translated", "direct"),
            ("translated", "passthrough"),
            ("cached", "direct"),
            ("cached", "governed"),
        ] {
            if let (Some(t), Some(b)) = (find(target), find(baseline)) {
                comparisons.push(Comparison {
                    target: t.target,
                    baseline: b.target,
                    throughput_ratio: if b.rps > 0.0 { t.rps / b.rps } else { f64::NAN },
                    added_p50_ms: t.p50_ms - b.p50_ms,
                    added_p99_ms: t.p99_ms - b.p99_ms,
                    cpu_ratio: t
                        .cpu_ms_per_request
                        .zip(b.cpu_ms_per_request)
                        .filter(|(_, b)| *b > 0.0)
                        .map(|(t, b)| t / b),
                    added_cpu_ms: t
                        .cpu_ms_per_request
                        .zip(b.cpu_ms_per_request)
                        .map(|(t, b)| t - b),
                });
            }
        }
        Self {
            name,
            title,
            rate,
            targets,
            comparisons,
        }
    }

    /// Warnings that belong under the table: failed requests by kind, and fixed-rate runs
    /// that fell behind (their latency then includes time queued in the load generator).
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for t in &self.targets {
            if t.failures() > 0 {
                let kinds: Vec<String> = t
                    .runs
                    .iter()
                    .flat_map(|r| {
                        let codes = r
                            .stats
                            .status_codes
                            .iter()
                            .filter(|(c, _)| !c.starts_with('2'));
                        codes
                            .chain(r.stats.error_kinds.iter())
                            .map(|(k, n)| format!("{k}: {n}"))
                    })
                    .collect();
                notes.push(format!(
                    "{} failed requests on {}: {}",
                    t.failures(),
                    t.target,
                    kinds.join(", ")
                ));
            }
            if let Some(rate) = self.rate
                && t.rps < 0.95 * f64::from(rate)
            {
                notes.push(format!(
                    "{} reached only {:.0} of {rate} req/s: it could not keep up, so its latency includes queueing",
                    t.target, t.rps
                ));
            }
        }
        notes
    }

    fn vs_direct(&self, target: &str) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.target == target && c.baseline == "direct")
    }

    fn compare(&self, target: &str, baseline: &str) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.target == target && c.baseline == baseline)
    }

    /// Lines under the table: Tollgate against nginx, governed against passthrough, and the
    /// Redis commands a governed request cost.
    fn summary_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (target, baseline) in [
            ("passthrough", "floor"),
            ("governed", "floor"),
            ("gov-slots", "floor"),
            ("passthrough", "nginx"),
            ("governed", "passthrough"),
            ("gov-slots", "passthrough"),
            ("routed", "passthrough"),
            ("translated", "passthrough"),
            ("cached", "governed"),
        ] {
            if let Some(c) = self.compare(target, baseline) {
                let cpu = match (c.cpu_ratio, c.added_cpu_ms) {
                    (Some(r), Some(d)) => format!(", {r:.3}x CPU per request ({d:+.4} ms)"),
                    _ => String::new(),
                };
                out.push(format!(
                    "{target} vs {baseline}: {:.3}x throughput, p50 {:+.3} ms, p99 {:+.3} ms{cpu}",
                    c.throughput_ratio, c.added_p50_ms, c.added_p99_ms
                ));
            }
        }
        // At a fixed rate, Tollgate's own view of its overhead beside the added latency
        // measured from outside (which also holds the extra loopback hop and parsing).
        if self.rate.is_some() {
            for t in &self.targets {
                let own: Vec<f64> = t.runs.iter().filter_map(|r| r.overhead_p50_ms).collect();
                if let (false, Some(c)) = (own.is_empty(), self.vs_direct(t.target)) {
                    out.push(format!(
                        "{}: Tollgate's own overhead p50 {:.3} ms (tollgate_overhead_seconds) vs added p50 {:+.3} ms",
                        t.target,
                        median(own),
                        c.added_p50_ms
                    ));
                }
            }
        }
        for t in self.targets.iter().filter(|t| t.target.starts_with("gov")) {
            if let Some(line) = t.redis_per_request() {
                out.push(format!(
                    "{}: Redis commands per 2xx answer: {line}",
                    t.target
                ));
            }
            if let Some(ms) = t.redis_round_trip_ms() {
                out.push(format!(
                    "{}: a bare Redis round trip during its runs (PING, plain socket, every 20 ms): p50 {ms:.3} ms",
                    t.target
                ));
            }
        }
        out
    }

    /// Rows of cells, shared by the terminal and Markdown tables.
    fn rows(&self) -> Vec<[String; 11]> {
        self.targets
            .iter()
            .map(|t| {
                let (ratio, p50, p99) = match self.vs_direct(t.target) {
                    Some(c) => (
                        format!("{:.3}x", c.throughput_ratio),
                        format!("{:+.3}", c.added_p50_ms),
                        format!("{:+.3}", c.added_p99_ms),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                [
                    t.target.to_string(),
                    format!("{:.0}", t.rps),
                    format!("{:.3}", t.p50_ms),
                    format!("{:.3}", t.p90_ms),
                    format!("{:.3}", t.p99_ms),
                    t.failures().to_string(),
                    t.cpu_ms_per_request
                        .map_or_else(|| "-".into(), |c| format!("{c:.4}")),
                    format!(
                        "{:.0}/{:.0}/{:.0}",
                        t.rss_idle_mib, t.rss_peak_mib, t.rss_after_mib
                    ),
                    ratio,
                    p50,
                    p99,
                ]
            })
            .collect()
    }
}

const HEADERS: [&str; 11] = [
    "target",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "failed",
    "CPU ms/req",
    "RSS MiB idle/peak/after",
    "vs direct",
    "+p50 ms",
    "+p99 ms",
];

/// The fixed-width table printed after each scenario.
pub fn terminal_table(s: &ScenarioResult) -> String {
    let rows = s.rows();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = format!("\n== {}: {} ==\n", s.name, s.title);
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                let _ = write!(l, "{cell:<w$}");
            } else {
                let _ = write!(l, "  {cell:>w$}");
            }
        }
        l.push('\n');
        l
    };
    out.push_str(&line(&HEADERS.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    for l in s.summary_lines() {
        out.push_str(&l);
        out.push('\n');
    }
    for note in s.notes() {
        let _ = writeln!(out, "!! {note}");
    }
    out
}

/// The Markdown section: machine, settings, one table per scenario.
pub fn markdown(report: &Report) -> String {
    let mut out = String::from("### Machine\n\n");
    for (k, v) in report.machine.lines() {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let st = &report.settings;
    let _ = writeln!(
        out,
        "\n### Settings\n\n- duration {}s per run after a {}s warm-up, {} round(s) (medians shown), {} connections\n\
         - fixed-rate runs: {} req/s, {}\n- Tollgate: {} worker thread(s), default log level (info), stderr to {}\n\
         - nginx: {}\n- commands:",
        st.duration_s,
        st.warmup_s,
        st.rounds,
        st.connections,
        st.rate,
        st.rate_mode,
        st.tollgate_threads,
        st.tollgate_log,
        st.nginx_workers.map_or("not run".into(), |w| format!(
            "{w} worker process(es), access_log off, proxy_buffering off, upstream keepalive 64"
        )),
    );
    for c in &st.commands {
        let _ = writeln!(out, "  - `{c}`");
    }
    for s in &report.scenarios {
        let _ = writeln!(out, "\n### {}: {}\n", s.name, s.title);
        let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
        for row in s.rows() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        for l in s.summary_lines() {
            let _ = writeln!(out, "\n{l}");
        }
        for note in s.notes() {
            let _ = writeln!(out, "\n**Warning:** {note}");
        }
    }
    if let Some(first) = report.settled.first() {
        let _ = writeln!(
            out,
            "\n### settled: RSS {} s after the last load\n\n\
             | target | RSS idle MiB | RSS settled MiB | × idle |\n|---|---|---|---|",
            first.after_s
        );
        for t in &report.settled {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.2}x |",
                t.target,
                t.idle_rss_mib,
                t.rss_mib,
                t.rss_mib / t.idle_rss_mib
            );
        }
    }
    if !report.streams.is_empty() {
        let n = report.streams[0].streams;
        let _ = writeln!(
            out,
            "\n### streams: {n} slow streams held open at once per proxy\n\n\
             | target | completed | open at once | RSS before MiB | RSS peak MiB | RSS after MiB | per stream | CPU s |\n\
             |---|---|---|---|---|---|---|---|"
        );
        for h in &report.streams {
            let _ = writeln!(
                out,
                "| {} | {}/{} | {} | {:.1} | {:.1} | {:.1} | {} | {:.2} |",
                h.target,
                h.completed,
                h.streams,
                h.open_at_once,
                h.rss_before_mib,
                h.rss_peak_mib,
                h.rss_after_mib,
                h.per_stream(),
                h.cpu_s
            );
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &'static str, rps: f64, p50: f64, p99: f64) -> TargetResult {
        let stats = RunStats {
            rps,
            p50_ms: p50,
            p90_ms: p50,
            p99_ms: p99,
            ok: 10,
            ..RunStats::default()
        };
        TargetResult::from_runs(
            name,
            18.0,
            vec![TargetRun {
                stats,
                upstream_requests: 10,
                upstream_streams_aborted: 0,
                redis_commands: BTreeMap::new(),
                redis_round_trip_ms: None,
                cpu_ms_per_request: Some(0.1),
                rss_peak_mib: 24.0,
                rss_after_mib: 20.0,
                overhead_p50_ms: None,
            }],
        )
    }

    #[test]
    fn compares_against_direct_and_nginx() {
        let mut governed = target("governed", 250.0, 1.6, 3.5);
        governed.runs[0].redis_commands.insert("evalsha".into(), 20);
        governed.runs[0].redis_commands.insert("ping".into(), 3);
        governed.runs[0].redis_round_trip_ms = Some(0.125);
        governed.cpu_ms_per_request = Some(0.25);
        let s = ScenarioResult::new(
            "throughput",
            "t".into(),
            None,
            vec![
                target("direct", 1000.0, 1.0, 2.0),
                target("passthrough", 500.0, 1.5, 3.0),
                governed,
                target("nginx", 400.0, 1.2, 2.5),
            ],
        );
        let c = s.compare("passthrough", "nginx").unwrap();
        assert!((c.throughput_ratio - 1.25).abs() < 1e-9);
        assert!((c.added_p50_ms - 0.3).abs() < 1e-9);
        let table = terminal_table(&s);
        assert!(
            table.contains("0.500x") && table.contains("+0.500") && table.contains("+1.000"),
            "{table}"
        );
        assert!(table.contains("passthrough vs nginx: 1.250x"), "{table}");
        assert!(
            table.contains("governed vs passthrough: 0.500x throughput, p50 +0.100 ms"),
            "{table}"
        );
        assert!(
            table.contains("2.500x CPU per request (+0.1500 ms)"),
            "{table}"
        );
        assert!(table.contains("18/24/20"), "{table}");
        assert!(
            table.contains("0.2500") && table.contains("0.1000"),
            "{table}"
        );
        assert!(
            table.contains("Redis commands per 2xx answer: evalsha 2.00\n"),
            "{table}"
        );
        assert!(
            table.contains("(PING, plain socket, every 20 ms): p50 0.125 ms"),
            "{table}"
        );
        assert!(!table.contains("!!"), "{table}");
    }

    #[test]
    fn flags_failures_and_missed_rates() {
        let mut failing = target("passthrough", 300.0, 1.0, 2.0);
        failing.runs[0].stats.status_codes.insert("502".into(), 4);
        failing.non_2xx = 4;
        let s = ScenarioResult::new(
            "latency",
            "t".into(),
            Some(500),
            vec![target("direct", 499.0, 1.0, 2.0), failing],
        );
        let table = terminal_table(&s);
        assert!(
            table.contains("!! 4 failed requests on passthrough: 502: 4"),
            "{table}"
        );
        assert!(
            table.contains("!! passthrough reached only 300 of 500 req/s"),
            "{table}"
        );
        assert!(!table.contains("direct reached"), "{table}");
    }

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
