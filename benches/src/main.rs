//! `tollgate-bench`: in one run, starts the mock upstream, Tollgate (passthrough, governed
//! with leased limits, governed with slots and budgets, routed, translated), the bare
//! Pingora proxy it is built on (the floor) and nginx in front of it, drives each with oha
//! (or wrk) through four scenarios, and reports throughput, latency, CPU time per request
//! and resident memory per target, with Tollgate against the direct path, the floor and
//! nginx; `--streams N` also holds N slow streams open through each proxy.

mod cpu;
mod http;
mod load;
mod machine;
mod overhead;
mod probes;
mod procs;
mod redis_stats;
mod report;
mod scenarios;
mod streams;
mod targets;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::load::{LoadSpec, LoadTool};
use crate::machine::Machine;
use crate::report::{Report, ScenarioResult, Settings, TargetResult, TargetRun};
use crate::scenarios::{PATH, Scenario};
use crate::targets::{Mode, Target};

/// How long a target is left alone before its resident memory is read, idle or after a
/// run: its last writes land, and the allocator hands freed memory back (mimalloc purges
/// a second after a free; the gateway has a thread carry purges out when it is quiet).
const SETTLE: Duration = Duration::from_secs(3);

/// Load harness: the mock upstream direct vs. Tollgate vs. nginx, measured in one run.
#[derive(Parser)]
#[command(name = "tollgate-bench", version)]
struct Args {
    /// Directory with the `tollgate` and `tollgate-mock` binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Length of each measured run, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured load before each measured run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Request rate of the fixed-rate scenarios, in req/s.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Tollgate's worker threads (`server.threads`); nginx gets as many worker processes.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured runs per target and scenario, in rotating order; medians are reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Scenarios to run (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Do not start nginx even if it is installed.
    #[arg(long)]
    skip_nginx: bool,
    /// Redis for the governed targets (an issued key with quotas, metering on).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Do not run the governed targets.
    #[arg(long)]
    skip_governed: bool,
    /// Do not run the routed target (two deployments and a fallback model).
    #[arg(long)]
    skip_routed: bool,
    /// Do not run the translated target (the model at an Anthropic deployment).
    #[arg(long)]
    skip_translated: bool,
    /// Do not run the cached target (governed, every request a response-cache hit).
    #[arg(long)]
    skip_cached: bool,
    /// Do not run the Pingora floor (`tollgate-pingora-floor`: a bare Pingora proxy with a
    /// static key check, a key swap and one fixed peer).
    #[arg(long)]
    skip_floor: bool,
    /// Also hold this many slow streams open at once through each proxy (the mock sends a
    /// token a second) and report resident memory per open stream.
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Token chunks of each held stream (one a second).
    #[arg(long, default_value_t = 20)]
    stream_tokens: u32,
    /// Run only the `--streams` probe, no load scenarios.
    #[arg(long, requires = "streams")]
    streams_only: bool,
    /// Force a load generator (oha or wrk); oha is preferred when installed.
    #[arg(long)]
    tool: Option<String>,
    /// Where Tollgate's stderr (its access log) goes; a file in the run's temp dir by default.
    #[arg(long)]
    gateway_log: Option<PathBuf>,
    /// Write the full results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as Markdown, for benches/RESULTS.md.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also measure the passthrough Tollgate's memory with this many idle client
    /// connections open (each sent half a request head).
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// Also measure the passthrough Tollgate's latency while this many threads log in to
    /// its admin API back to back.
    #[arg(long, default_value_t = 0)]
    login_flood: usize,
    /// How long each latency measurement of the login-flood probe runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    probe_duration: Duration,
    /// After the load scenarios, read every target's memory once more this long after the
    /// last run: past the 30 s after which Tollgate drops its estimate tokenizer. `0s`
    /// skips it.
    #[arg(long, default_value = "35s", value_parser = humantime::parse_duration)]
    settled_after: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    procs::install_signal_flag()?;
    if args.connections == 0 || args.threads == 0 || args.rounds == 0 || args.rate == 0 {
        bail!("--connections, --threads, --rounds and --rate must be at least 1");
    }
    for bin in ["tollgate", "tollgate-mock"] {
        if !args.bin_dir.join(bin).is_file() {
            bail!(
                "{} not found: build it, or point --bin-dir elsewhere",
                args.bin_dir.join(bin).display()
            );
        }
    }
    let tool = LoadTool::detect(args.tool.as_deref())?;
    if let LoadTool::Wrk { .. } = tool {
        eprintln!(
            "note: oha is not installed, using wrk; fixed-rate runs are only approximate with wrk"
        );
    }
    let nginx = if args.skip_nginx {
        None
    } else {
        let found = which("nginx");
        if found.is_none() {
            eprintln!("note: nginx is not on PATH, so the nginx comparison is skipped");
        }
        found
    };
    let machine = Machine::describe(
        format!("{} ({})", tool.name(), tool.version()),
        nginx.as_deref().map(|p| load::version_of(p, "-v")),
        &args.bin_dir,
    );
    println!("machine:");
    for (k, v) in machine.lines() {
        println!("  {k}: {v}");
    }

    // Every process started from here inherits the open-file limit the streams probe needs
    // (client, upstream and mock sides of each stream).
    let descriptors = streams::raise_descriptor_limit(4 * args.streams as u64 + 4096)?;
    if args.streams > 0 {
        println!("  open-file limit: {descriptors}");
    }

    let work = tempfile::Builder::new()
        .prefix("tollgate-bench-")
        .tempdir()?;
    let gateway_log = args
        .gateway_log
        .clone()
        .unwrap_or_else(|| work.path().join("tollgate.log"));
    let mock = targets::start_mock(&args.bin_dir, work.path())?;
    let floor = args.bin_dir.join("tollgate-pingora-floor");
    let mut targets = Vec::new();
    match (args.skip_floor, floor.is_file()) {
        (true, _) => {}
        (false, true) => targets.push(targets::start_floor(
            &args.bin_dir,
            work.path(),
            mock.addr,
            args.threads,
        )?),
        (false, false) => eprintln!(
            "note: {} is not built, so the Pingora floor is skipped",
            floor.display()
        ),
    }
    let tollgate = |log: &Path, mode| {
        targets::start_tollgate(
            &args.bin_dir,
            work.path(),
            mock.addr,
            args.threads,
            log,
            mode,
        )
    };
    targets.push(tollgate(&gateway_log, Mode::Passthrough)?);
    if !args.skip_routed {
        targets.push(tollgate(&work.path().join("routed.log"), Mode::Routed)?);
    }
    if !args.skip_translated {
        targets.push(tollgate(
            &work.path().join("translated.log"),
            Mode::Translated,
        )?);
    }
    // The governed target's Redis, whose command counters each governed run reads.
    let redis = if args.skip_governed {
        None
    } else {
        let addr = redis_stats::RedisAddr::parse(&args.redis_url)?;
        match redis_stats::command_calls(&addr) {
            Ok(_) => Some(addr),
            Err(e) => {
                eprintln!(
                    "note: no Redis answers at {} ({e:#}), so the governed target is skipped",
                    addr.host_port
                );
                None
            }
        }
    };
    if redis.is_some() {
        for slots in [false, true] {
            targets.push(tollgate(
                &work.path().join(format!("governed-{slots}.log")),
                Mode::Governed {
                    redis_url: &args.redis_url,
                    slots,
                },
            )?);
        }
        if !args.skip_cached {
            targets.push(tollgate(
                &work.path().join("cached.log"),
                Mode::Cached {
                    redis_url: &args.redis_url,
                },
            )?);
        }
    }
    if let Some(nginx) = &nginx {
        targets.push(targets::start_nginx(
            nginx,
            work.path(),
            mock.addr,
            args.threads,
            args.streams,
        )?);
    }
    targets.insert(0, mock);
    // Resident memory before any load, once start-up work (key cache, partitions) settled
    // and the memory it freed was handed back (the allocator purges after a second).
    procs::sleep(SETTLE)?;
    for t in &mut targets {
        t.idle_rss_mib = cpu::process_tree_rss_mib(t.pid());
        println!(
            "{:>11}: http://{}  (idle RSS {:.1} MiB)",
            t.name, t.addr, t.idle_rss_mib
        );
    }

    let settings = Settings {
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        connections: args.connections,
        rate: args.rate,
        rate_mode: tool.rate_mode().into(),
        tollgate_threads: args.threads,
        nginx_workers: nginx.as_ref().map(|_| args.threads),
        rounds: args.rounds,
        tollgate_log: match &args.gateway_log {
            Some(path) => path.display().to_string(),
            None => "a file in the run's temp dir (removed afterwards)".into(),
        },
        commands: example_commands(&tool, &args, nginx.is_some()),
        nginx_conf: targets.iter().find(|t| t.name == "nginx").map(|t| {
            targets::nginx_conf(
                Path::new("PREFIX"),
                t.addr.port(),
                targets[0].addr,
                args.threads,
                args.streams,
            )
        }),
    };
    for c in &settings.commands {
        println!("  $ {c}");
    }

    let scenarios = if args.streams_only {
        Vec::new()
    } else if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let mut results = Vec::new();
    for (i, &scenario) in scenarios.iter().enumerate() {
        let result = run_scenario(
            scenario,
            i,
            &args,
            &tool,
            &mut targets,
            redis.as_ref(),
            work.path(),
        )
        .inspect_err(|_| {
            if procs::check_interrupted().is_ok() {
                print_log_tail(&gateway_log);
            }
        })?;
        print!("{}", report::terminal_table(&result));
        results.push(result);
    }

    let mut settled = Vec::new();
    if !results.is_empty() && !args.settled_after.is_zero() {
        procs::sleep(args.settled_after)?;
        println!(
            "\nsettled: RSS {} s after the last load (idle → now)",
            args.settled_after.as_secs()
        );
        for t in targets.iter().skip(1) {
            let now = report::Settled {
                target: t.name,
                after_s: args.settled_after.as_secs(),
                idle_rss_mib: t.idle_rss_mib,
                rss_mib: cpu::process_tree_rss_mib(t.pid()),
            };
            println!("  {}", now.line());
            settled.push(now);
        }
    }

    let mut held = Vec::new();
    if args.streams > 0 {
        println!(
            "\nstreams: {} slow streams held open at once per proxy ({} tokens, one a second)",
            args.streams, args.stream_tokens
        );
        for t in targets.iter_mut().skip(1) {
            t.check_running()?;
            let result = streams::hold(t, args.streams, args.stream_tokens)?;
            println!("  {}", result.line());
            held.push(result);
        }
    }

    let passthrough = targets.iter().find(|t| t.name == "passthrough");
    if let Some(t) = passthrough.filter(|_| args.idle_connections > 0) {
        println!(
            "\nprobe: {}",
            probes::idle_connections(t.pid(), t.addr, args.idle_connections)?
        );
    }
    if let Some((t, admin)) = passthrough
        .and_then(|t| Some((t, t.admin?)))
        .filter(|_| args.login_flood > 0)
    {
        println!(
            "\nprobe: {}",
            probes::login_flood(
                t.addr,
                admin,
                &t.auth,
                args.login_flood,
                args.probe_duration
            )?
        );
    }

    let report = Report {
        machine,
        settings,
        scenarios: results,
        settled,
        streams: held,
    };
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    if let Some(path) = &args.markdown {
        fs::write(path, report::markdown(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let failed: u64 = report
        .scenarios
        .iter()
        .flat_map(|s| &s.targets)
        .map(TargetResult::failures)
        .sum();
    if failed > 0 {
        bail!(
            "{failed} requests failed (see the tables above): these figures measure errors, not service"
        );
    }
    Ok(())
}

/// Runs one scenario: a check request per target, then per round a warm-up and a
/// measured run for each target, the order rotating so no target always goes first.
fn run_scenario(
    scenario: Scenario,
    index: usize,
    args: &Args,
    tool: &LoadTool,
    targets: &mut [Target],
    redis: Option<&redis_stats::RedisAddr>,
    work: &Path,
) -> anyhow::Result<ScenarioResult> {
    let title = scenario.title(args.connections, args.rate);
    println!("\n{}: {title}", scenario.name());
    for t in targets.iter_mut() {
        t.check_running()?;
        scenario.verify(t.name, t.addr, &t.auth)?;
    }
    let upstream = targets[0].addr;
    let mut runs: Vec<Vec<TargetRun>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for k in 0..targets.len() {
            let at = (k + index + round) % targets.len();
            let target = &mut targets[at];
            let url = target.url(PATH);
            let rate = scenario.fixed_rate().then_some(args.rate);
            let redis = redis.filter(|_| target.name.starts_with("gov"));
            if redis.is_some() {
                // The warm-up's last settlements land before the first reading.
                procs::sleep(Duration::from_millis(200))?;
            }
            let auth = target.auth.clone();
            let spec = |duration| LoadSpec {
                url: &url,
                body: scenario.body(),
                auth: &auth,
                connections: args.connections,
                duration,
                rate,
            };
            let warm = tool.run(&spec(args.warmup), work)?;
            if warm.failures() > 0 {
                eprintln!(
                    "  warning: {} failed requests during the warm-up of {}",
                    warm.failures(),
                    target.name
                );
            }
            let redis_before = redis.map(redis_stats::command_calls).transpose()?;
            // At a fixed rate, the floor of a check: a bare round trip to the same Redis,
            // timed now and then (not so often that it keeps Redis busier than the load).
            let round_trips = match (redis, rate) {
                (Some(addr), Some(_)) => Some(redis_stats::RoundTrips::start(
                    addr,
                    Duration::from_millis(20),
                )?),
                _ => None,
            };
            let before = MockCounters::read(upstream)?;
            let cpu_before = cpu::process_tree_cpu(target.pid());
            let overhead_before = target.metrics.map(overhead::Buckets::read).transpose()?;
            let rss = cpu::RssPeak::start(target.pid());
            let stats = tool.run(&spec(args.duration), work)?;
            let cpu_used = cpu::process_tree_cpu(target.pid()).saturating_sub(cpu_before);
            let rss_peak_mib = rss.finish();
            let overhead_p50_ms = match (target.metrics, &overhead_before) {
                (Some(metrics), Some(before)) => {
                    overhead::Buckets::read(metrics)?.p50_ms_since(before)
                }
                _ => None,
            };
            let after = MockCounters::read(upstream)?;
            let redis_round_trip_ms = match round_trips {
                Some(probe) => probe.finish()?,
                None => None,
            };
            let redis_commands = match (redis, redis_before) {
                (Some(addr), Some(before)) => {
                    // The last answers' quota settlements land just after the load ends.
                    procs::sleep(Duration::from_millis(200))?;
                    redis_stats::delta(&before, &redis_stats::command_calls(addr)?)
                }
                _ => Default::default(),
            };
            target.check_running()?;
            // What the load left behind, once its last responses and writes are done and
            // freed memory was handed back.
            procs::sleep(SETTLE)?;
            let rss_after_mib = cpu::process_tree_rss_mib(target.pid());
            let run = TargetRun {
                upstream_requests: after.chat.saturating_sub(before.chat),
                upstream_streams_aborted: after.aborted.saturating_sub(before.aborted),
                redis_commands,
                redis_round_trip_ms,
                cpu_ms_per_request: (stats.ok > 0)
                    .then(|| cpu_used.as_secs_f64() * 1000.0 / stats.ok as f64),
                rss_peak_mib,
                rss_after_mib,
                overhead_p50_ms,
                stats,
            };
            println!("  {}", progress_line(target.name, &run));
            // The cached target answers from its cache: the upstream seeing nothing is the point.
            let cached = target.name == "cached";
            if (run.upstream_requests < run.stats.ok && !cached) || run.upstream_streams_aborted > 0
            {
                eprintln!(
                    "  warning: {} answered {} requests with 2xx, the upstream saw {} ({} streams aborted)",
                    target.name, run.stats.ok, run.upstream_requests, run.upstream_streams_aborted
                );
            }
            runs[at].push(run);
        }
    }
    let results = targets
        .iter()
        .zip(runs)
        .map(|(t, r)| TargetResult::from_runs(t.name, t.idle_rss_mib, r))
        .collect();
    Ok(ScenarioResult::new(
        scenario.name(),
        title,
        scenario.fixed_rate().then_some(args.rate),
        results,
    ))
}

fn progress_line(target: &str, run: &TargetRun) -> String {
    let s = &run.stats;
    format!(
        "{target:<11} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  CPU {:.4} ms/req  RSS peak {:.0} after {:.0} MiB  failed {}",
        s.rps,
        s.p50_ms,
        s.p99_ms,
        run.cpu_ms_per_request.unwrap_or(f64::NAN),
        run.rss_peak_mib,
        run.rss_after_mib,
        s.failures()
    )
}

/// The mock upstream's counters that the harness cross-checks against the load report.
struct MockCounters {
    /// Chat completions, and Anthropic messages (what the translated target sends).
    chat: u64,
    aborted: u64,
}

impl MockCounters {
    fn read(mock: std::net::SocketAddr) -> anyhow::Result<Self> {
        let resp = http::get(mock, "/_mock/stats")?;
        let v: serde_json::Value =
            serde_json::from_str(&resp.body).context("parsing /_mock/stats")?;
        let get = |ptr: &str| {
            v.pointer(ptr)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Ok(Self {
            chat: get("/requests/chat_completions") + get("/requests/messages"),
            aborted: get("/streams/aborted"),
        })
    }
}

/// The load generator's command lines for the two kinds of run, and nginx's.
fn example_commands(tool: &LoadTool, args: &Args, nginx: bool) -> Vec<String> {
    let spec = |rate| LoadSpec {
        url: "http://127.0.0.1:PORT/v1/chat/completions",
        body: "BODY",
        auth: "Bearer KEY",
        connections: args.connections,
        duration: args.duration,
        rate,
    };
    let mut out = vec![
        tool.describe(&spec(None)),
        tool.describe(&spec(Some(args.rate))),
    ];
    if nginx {
        out.push(
            "nginx -e PREFIX/error.log -c PREFIX/nginx.conf -p PREFIX -g 'daemon off;'".into(),
        );
    }
    out
}

/// A program on PATH, or in the sbin directories a non-root PATH often lacks.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn print_log_tail(log: &Path) {
    if let Ok(text) = fs::read_to_string(log) {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("last lines of {}:", log.display());
        for l in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  {l}");
        }
    }
}
