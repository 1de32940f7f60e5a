//! Drives one load run with an external load generator and turns its report into
//! [`RunStats`]: oha (preferred: open-loop fixed rate with latency correction) or wrk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::procs::ChildGuard;

/// Which load generator runs, and how.
#[derive(Debug, Clone)]
pub enum LoadTool {
    Oha { path: PathBuf, version: String },
    Wrk { path: PathBuf, version: String },
}

/// What one run asks of the load generator.
pub struct LoadSpec<'a> {
    pub url: &'a str,
    pub body: &'a str,
    pub auth: &'a str,
    pub connections: usize,
    pub duration: Duration,
    /// Fixed request rate (req/s); `None` means as fast as possible.
    pub rate: Option<u32>,
}

/// The outcome of one run. Latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// 2xx responses per second of the run.
    pub rps: f64,
    pub ok: u64,
    /// Responses with a status outside 2xx.
    pub non_2xx: u64,
    /// Requests that got no response (connect/read/write errors, timeouts).
    pub transport_errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub duration_s: f64,
    pub status_codes: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
}

impl RunStats {
    /// Every request that did not end in a 2xx response.
    pub fn failures(&self) -> u64 {
        self.non_2xx + self.transport_errors
    }
}

impl LoadTool {
    /// oha if it is on PATH (or in ~/.cargo/bin), else wrk; `forced` picks one by name.
    pub fn detect(forced: Option<&str>) -> anyhow::Result<Self> {
        let oha = find_program("oha");
        let wrk = find_program("wrk");
        let tool = match (forced, oha, wrk) {
            (Some("oha") | None, Some(path), _) => LoadTool::Oha {
                version: version_of(&path, "--version"),
                path,
            },
            (Some("wrk") | None, _, Some(path)) => LoadTool::Wrk {
                version: version_of(&path, "-v"),
                path,
            },
            (Some(name @ ("oha" | "wrk")), _, _) => {
                bail!("{name} is not installed (see scripts/bench)")
            }
            (Some(other), _, _) => bail!("unknown load tool {other:?}: use oha or wrk"),
            (None, None, None) => {
                bail!("neither oha nor wrk is installed (scripts/bench installs them)")
            }
        };
        Ok(tool)
    }

    pub fn name(&self) -> &'static str {
        match self {
            LoadTool::Oha { .. } => "oha",
            LoadTool::Wrk { .. } => "wrk",
        }
    }

    pub fn version(&self) -> &str {
        match self {
            LoadTool::Oha { version, .. } | LoadTool::Wrk { version, .. } => version,
        }
    }

    /// How fixed-rate runs are made with this tool.
    pub fn rate_mode(&self) -> &'static str {
        match self {
            LoadTool::Oha { .. } => {
                "open loop (oha -q, latency measured from the scheduled send time)"
            }
            LoadTool::Wrk { .. } => {
                "approximate: wrk delay() per connection, closed loop, not corrected for coordinated omission"
            }
        }
    }

    /// The command line for a run, with the body and key elided, for the report.
    pub fn describe(&self, spec: &LoadSpec) -> String {
        let redacted = LoadSpec {
            body: "BODY",
            auth: "Bearer KEY",
            ..*spec
        };
        let (cmd, _) = self.command(&redacted, Path::new("SCRIPT.lua"));
        let mut out = cmd.get_program().to_string_lossy().into_owned();
        for arg in cmd.get_args() {
            let arg = arg.to_string_lossy();
            if arg.contains(' ') || arg.contains(';') || arg.is_empty() {
                out.push_str(&format!(" '{arg}'"));
            } else {
                out.push(' ');
                out.push_str(&arg);
            }
        }
        if let (LoadTool::Wrk { .. }, Some(rate)) = (self, spec.rate) {
            out.push_str(&format!(
                "  # SCRIPT.lua paces each connection with delay() to {rate} req/s in total"
            ));
        }
        out
    }

    /// Runs the load and parses the tool's report. `work` holds scratch files.
    pub fn run(&self, spec: &LoadSpec, work: &Path) -> anyhow::Result<RunStats> {
        let script = work.join("load.lua");
        let (mut cmd, lua) = self.command(spec, &script);
        if let Some(lua) = lua {
            fs::write(&script, lua)?;
        }
        let out_path = work.join(format!("{}.out", self.name()));
        let err_path = work.join(format!("{}.err", self.name()));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?);
        let mut child = ChildGuard::spawn(self.name(), &mut cmd)?;
        let status = child.wait(spec.duration + Duration::from_secs(60))?;
        let out = fs::read_to_string(&out_path)?;
        if !status.success() {
            let err = fs::read_to_string(&err_path).unwrap_or_default();
            bail!("{} failed ({status}): {}", self.name(), err.trim());
        }
        match self {
            LoadTool::Oha { .. } => parse_oha(&out),
            LoadTool::Wrk { .. } => parse_wrk(&out),
        }
        .with_context(|| {
            format!(
                "parsing the {} report (in {})",
                self.name(),
                out_path.display()
            )
        })
    }

    fn command(&self, spec: &LoadSpec, script: &Path) -> (Command, Option<String>) {
        match self {
            LoadTool::Oha { path, .. } => {
                let mut cmd = Command::new(path);
                cmd.args([
                    "-z",
                    &humantime::format_duration(spec.duration).to_string(),
                    "-w",
                    "-c",
                    &spec.connections.to_string(),
                ]);
                if let Some(rate) = spec.rate {
                    cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
                }
                cmd.args(["--no-tui", "--output-format", "json", "-m", "POST"]);
                cmd.args([
                    "-H",
                    "content-type: application/json",
                    "-H",
                    &format!("authorization: {}", spec.auth),
                ]);
                cmd.args(["-d", spec.body, spec.url]);
                (cmd, None)
            }
            LoadTool::Wrk { path, .. } => {
                // wrk takes whole seconds.
                let secs = format!("{}s", spec.duration.as_secs_f64().ceil().max(1.0));
                let threads = spec.connections.clamp(1, 2);
                let mut cmd = Command::new(path);
                cmd.args([
                    "-t",
                    &threads.to_string(),
                    "-c",
                    &spec.connections.to_string(),
                    "-d",
                    &secs,
                ]);
                cmd.args(["--latency", "-s"]).arg(script).arg(spec.url);
                (cmd, Some(wrk_script(spec)))
            }
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The first line the program prints for `flag` (oha prints to stdout, wrk and nginx to stderr).
pub fn version_of(path: &Path, flag: &str) -> String {
    let Ok(out) = Command::new(path).arg(flag).stdin(Stdio::null()).output() else {
        return "unknown".into();
    };
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// oha's `--output-format json` report: times in seconds; `statusCodeDistribution` counts
/// every response, `errorDistribution` every request without one.
fn parse_oha(out: &str) -> anyhow::Result<RunStats> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Report {
        summary: Summary,
        latency_percentiles: BTreeMap<String, Option<f64>>,
        status_code_distribution: BTreeMap<String, u64>,
        error_distribution: BTreeMap<String, u64>,
    }
    #[derive(Deserialize)]
    struct Summary {
        total: f64,
    }
    let report: Report = serde_json::from_str(out)?;
    let ms = |key: &str| {
        report
            .latency_percentiles
            .get(key)
            .copied()
            .flatten()
            .map_or(f64::NAN, |s| s * 1e3)
    };
    let ok: u64 = report
        .status_code_distribution
        .iter()
        .filter(|(code, _)| code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let all: u64 = report.status_code_distribution.values().sum();
    let duration = report.summary.total;
    Ok(RunStats {
        rps: if duration > 0.0 {
            ok as f64 / duration
        } else {
            0.0
        },
        ok,
        non_2xx: all - ok,
        transport_errors: report.error_distribution.values().sum(),
        p50_ms: ms("p50"),
        p90_ms: ms("p90"),
        p99_ms: ms("p99"),
        duration_s: duration,
        status_codes: report.status_code_distribution,
        error_kinds: report.error_distribution,
    })
}

/// The Lua script for wrk: POST with the body, an optional per-connection delay for a
/// target rate, and a JSON summary line printed by `done()`.
fn wrk_script(spec: &LoadSpec) -> String {
    let delay = match spec.rate {
        Some(rate) if rate > 0 => {
            format!(
                "function delay() return {:.3} end\n",
                spec.connections as f64 * 1000.0 / f64::from(rate)
            )
        }
        _ => String::new(),
    };
    format!(
        r#"wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = [==[{auth}]==]
{delay}function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"wrk":{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f}}}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"#,
        body = spec.body,
        auth = spec.auth,
    )
}

/// The JSON line of [`wrk_script`]'s `done()`. wrk counts statuses ≥ 400 as status errors.
fn parse_wrk(out: &str) -> anyhow::Result<RunStats> {
    #[derive(Deserialize)]
    struct Line {
        wrk: Wrk,
    }
    #[derive(Deserialize)]
    struct Wrk {
        requests: u64,
        duration_us: u64,
        connect: u64,
        read: u64,
        write: u64,
        status: u64,
        timeout: u64,
        p50_us: f64,
        p90_us: f64,
        p99_us: f64,
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"wrk\""))
        .context("no summary line from done()")?;
    let Line { wrk: w } = serde_json::from_str(line)?;
    let duration = w.duration_us as f64 / 1e6;
    let ok = w.requests.saturating_sub(w.status);
    let error_kinds: BTreeMap<String, u64> = [
        ("connect", w.connect),
        ("read", w.read),
        ("write", w.write),
        ("timeout", w.timeout),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    Ok(RunStats {
        rps: if duration > 0.0 {
            ok as f64 / duration
        } else {
            0.0
        },
        ok,
        non_2xx: w.status,
        transport_errors: error_kinds.values().sum(),
        p50_ms: w.p50_us / 1e3,
        p90_ms: w.p90_us / 1e3,
        p99_ms: w.p99_us / 1e3,
        duration_s: duration,
        status_codes: BTreeMap::from([
            ("2xx/3xx".to_string(), ok),
            (">=400".to_string(), w.status),
        ]),
        error_kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oha_json() {
        let out = r#"{"summary":{"successRate":1.0,"total":2.0,"slowest":0.01,"fastest":0.0001,"average":0.001,"requestsPerSec":100.0,"totalData":1,"sizePerRequest":1,"sizePerSec":1.0},
            "latencyPercentiles":{"p10":0.0001,"p50":0.0005,"p90":0.001,"p99":0.002,"p99.9":null},
            "statusCodeDistribution":{"200":190,"502":4},"errorDistribution":{"connection closed":6}}"#;
        let s = parse_oha(out).unwrap();
        assert_eq!(
            (s.ok, s.non_2xx, s.transport_errors, s.failures()),
            (190, 4, 6, 10)
        );
        assert!((s.rps - 95.0).abs() < 1e-9);
        assert!((s.p50_ms - 0.5).abs() < 1e-9 && (s.p99_ms - 2.0).abs() < 1e-9);
    }

    #[test]
    fn parses_wrk_line() {
        let out = "Running 2s test\n  2 threads\n{\"wrk\":{\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\"read\":3,\"write\":0,\"status\":10,\"timeout\":0,\"p50_us\":500,\"p90_us\":900,\"p99_us\":1500}}\n";
        let s = parse_wrk(out).unwrap();
        assert_eq!((s.ok, s.non_2xx, s.transport_errors), (990, 10, 3));
        assert!((s.rps - 495.0).abs() < 1e-9);
        assert!((s.p90_ms - 0.9).abs() < 1e-9);
    }
}
