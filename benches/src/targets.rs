//! The systems under test, each started on a free loopback port: the mock upstream (the
//! "direct" baseline), Tollgate proxying to it as a passthrough (master key) and governed
//! (an issued key with Redis quotas), the bare Pingora proxy Tollgate is built on (the
//! floor), and nginx proxying to it.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::http;
use crate::procs::{self, ChildGuard, command};

/// The client key the harness sends to the passthrough Tollgate (`TOLLGATE_MASTER_KEY`).
pub const MASTER_KEY: &str = "tollgate-bench-master-key-0001";
/// The governed Tollgate's server secret (keys are keyed-hashed with it).
const SECRET_KEY: &str = "tollgate-bench-server-secret-0123456789abcdef";
/// Limits far above what one machine can send: every request is checked against all of
/// them, none ever refuses.
const HIGH: i64 = 1_000_000_000;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running system that the load generator is pointed at.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// The `authorization` header its requests carry.
    pub auth: String,
    /// Tollgate's admin listener.
    pub admin: Option<SocketAddr>,
    /// Tollgate's metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Resident memory before any load, set once every target has started.
    pub idle_rss_mib: f64,
    guard: ChildGuard,
}

impl Target {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.guard
            .check_running()
            .with_context(|| format!("see {}", self.log.display()))
    }
}

/// Starts `tollgate-mock` on a free port, without request recording.
pub fn start_mock(bin_dir: &Path, work: &Path) -> anyhow::Result<Target> {
    let log = work.join("mock.log");
    let mut cmd = command(
        &bin_dir.join("tollgate-mock"),
        Stdio::piped(),
        File::create(&log)?.into(),
    );
    cmd.args(["--listen", "127.0.0.1:0", "--no-record"]);
    let guard = ChildGuard::spawn("tollgate-mock", &mut cmd)?;
    listening_target("direct", guard, log, |addr| {
        http::get(addr, "/_mock/stats").is_ok_and(|r| r.status == 200)
    })
}

/// A started target that prints `{"listening": ADDR}` first and takes the master key, once
/// `ready` says it serves.
fn listening_target(
    name: &'static str,
    mut guard: ChildGuard,
    log: PathBuf,
    ready: impl Fn(SocketAddr) -> bool,
) -> anyhow::Result<Target> {
    #[derive(Deserialize)]
    struct Listening {
        listening: SocketAddr,
    }
    let line = guard.first_stdout_line(START_TIMEOUT)?;
    let Listening { listening } =
        serde_json::from_str(&line).with_context(|| format!("{name} printed {line:?}"))?;
    wait_until(START_TIMEOUT, name, || {
        guard
            .check_running()
            .with_context(|| format!("see {}", log.display()))?;
        Ok(ready(listening))
    })?;
    Ok(Target {
        name,
        addr: listening,
        log,
        auth: format!("Bearer {MASTER_KEY}"),
        admin: None,
        metrics: None,
        idle_rss_mib: 0.0,
        guard,
    })
}

/// Starts `tollgate-pingora-floor` (a bare Pingora proxy: static key check, key swap, one
/// fixed peer) in front of the mock, with as many worker threads as Tollgate gets.
pub fn start_floor(
    bin_dir: &Path,
    work: &Path,
    upstream: SocketAddr,
    threads: usize,
) -> anyhow::Result<Target> {
    let log = work.join("floor.log");
    let mut cmd = command(
        &bin_dir.join("tollgate-pingora-floor"),
        Stdio::piped(),
        File::create(&log)?.into(),
    );
    cmd.args(["--listen", "127.0.0.1:0", "--key", MASTER_KEY])
        .arg("--upstream")
        .arg(upstream.to_string())
        .arg("--threads")
        .arg(threads.to_string());
    let guard = ChildGuard::spawn("tollgate-pingora-floor", &mut cmd)?;
    listening_target("floor", guard, log, |addr| TcpStream::connect(addr).is_ok())
}

/// How a Tollgate target is set up.
pub enum Mode<'a> {
    /// The master key: no key look-up and no quota scopes (usage events are still written).
    Passthrough,
    /// An issued `tg_` key whose user, key and deployment all have request and token
    /// limits, checked in the Redis at `redis_url` under a key prefix of this run; usage
    /// metered and priced. The limits are large, so replicas lease them (`governed`); with
    /// `slots`, the key and user also have a concurrency limit and a budget, which every
    /// request reserves in Redis (`gov-slots`).
    Governed { redis_url: &'a str, slots: bool },
    /// The master key, with the model served by two weighted deployments (two providers on
    /// the same upstream) and a fallback model: what routing costs over one deployment.
    Routed,
    /// The master key, with the model at an `anthropic` deployment (the mock in its
    /// Anthropic mode): what translating chat completions costs.
    Translated,
    /// As `Governed` (leased limits), with the model's response cache on in Redis and the
    /// scenario's requests cacheable: after the first, every request is a hit (`cached`).
    Cached { redis_url: &'a str },
}

/// Starts `tollgate serve` proxying to the mock; `log` gets its stderr (the default `info`
/// level: one access-log line per request).
pub fn start_tollgate(
    bin_dir: &Path,
    work: &Path,
    upstream: SocketAddr,
    threads: usize,
    log: &Path,
    mode: Mode<'_>,
) -> anyhow::Result<Target> {
    let name = match mode {
        Mode::Passthrough => "passthrough",
        Mode::Governed { slots: false, .. } => "governed",
        Mode::Governed { slots: true, .. } => "gov-slots",
        Mode::Routed => "routed",
        Mode::Translated => "translated",
        Mode::Cached { .. } => "cached",
    };
    let data_dir = work.join(format!("{name}-data"));
    fs::create_dir_all(&data_dir)?;
    let config = work.join(format!("{name}.yaml"));
    let (pricing, limits) = match mode {
        Mode::Passthrough | Mode::Routed | Mode::Translated => ("", ""),
        Mode::Governed { .. } => (
            ", pricing: {input_per_million: 0.15, output_per_million: 0.60}",
            ", rpm: 1000000000, tpm: 1000000000",
        ),
        // The scenarios' requests set no temperature: cached all the same.
        Mode::Cached { .. } => (
            ", pricing: {input_per_million: 0.15, output_per_million: 0.60}, \
             cache: {enabled: true, cache_nondeterministic: true}",
            ", rpm: 1000000000, tpm: 1000000000",
        ),
    };
    let routes = match mode {
        Mode::Routed => format!(
            "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: 'http://{upstream}/v1'}}\n\
             \x20 - {{name: upstream-b, kind: openai-compatible, base_url: 'http://{upstream}/v1'}}\n\
             models:\n  - {{name: gpt-4o-mini, deployments: [{{provider: upstream}}, {{provider: upstream-b}}], fallbacks: [backup]}}\n\
             \x20 - {{name: backup, deployments: [{{provider: upstream, model: gpt-4o-mini}}]}}\n"
        ),
        Mode::Translated => format!(
            "providers:\n  - {{name: upstream, kind: anthropic, base_url: 'http://{upstream}', api_key: bench}}\n\
             models:\n  - {{name: gpt-4o-mini, deployments: [{{provider: upstream}}]}}\n"
        ),
        _ => format!(
            "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: 'http://{upstream}/v1'}}\n\
             models:\n  - {{name: gpt-4o-mini{pricing}, deployments: [{{provider: upstream{limits}}}]}}\n"
        ),
    };
    fs::write(
        &config,
        format!(
            "server:\n  proxy_listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  \
             threads: {threads}\n  data_dir: '{}'\n  admin_login_attempts: 10000\n  \
             max_connections: 1000000\n{routes}",
            data_dir.display()
        ),
    )?;
    let mut cmd = command(
        &bin_dir.join("tollgate"),
        Stdio::piped(),
        File::create(log)?.into(),
    );
    cmd.arg("serve").arg("--config").arg(&config);
    cmd.env("TOLLGATE_MASTER_KEY", MASTER_KEY)
        .env_remove("RUST_LOG")
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_DATABASE_URL")
        .env_remove("TOLLGATE_REDIS_URL");
    if let Mode::Governed { redis_url, .. } | Mode::Cached { redis_url } = mode {
        cmd.env("TOLLGATE_REDIS_URL", redis_url)
            .env("TOLLGATE_REDIS_PREFIX", redis_prefix())
            .env("TOLLGATE_SECRET_KEY", SECRET_KEY);
    }
    let mut guard = ChildGuard::spawn("tollgate", &mut cmd)?;
    #[derive(Deserialize)]
    struct Listening {
        proxy: SocketAddr,
        metrics: SocketAddr,
        admin: SocketAddr,
    }
    let line = guard.first_stdout_line(START_TIMEOUT)?;
    let Listening {
        proxy,
        metrics,
        admin,
    } = serde_json::from_str(&line).with_context(|| format!("tollgate printed {line:?}"))?;
    wait_until(START_TIMEOUT, "tollgate /readyz", || {
        guard.check_running()?;
        Ok(http::get(metrics, "/readyz").is_ok_and(|r| r.status == 200)
            && TcpStream::connect(proxy).is_ok())
    })?;
    let auth = match mode {
        Mode::Passthrough | Mode::Routed | Mode::Translated => format!("Bearer {MASTER_KEY}"),
        Mode::Governed { slots, .. } => format!("Bearer {}", issue_governed_key(admin, slots)?),
        Mode::Cached { .. } => format!("Bearer {}", issue_governed_key(admin, false)?),
    };
    Ok(Target {
        name,
        addr: proxy,
        log: log.to_path_buf(),
        auth,
        admin: Some(admin),
        metrics: Some(metrics),
        idle_rss_mib: 0.0,
        guard,
    })
}

/// A prefix of this run's own, so its counters never meet another run's or a test's.
fn redis_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("tollgate-bench-{}-{nanos}:", std::process::id())
}

/// Creates a member with limits and a key of theirs with limits, through the admin API.
fn issue_governed_key(admin: SocketAddr, slots: bool) -> anyhow::Result<String> {
    let master = format!("Bearer {MASTER_KEY}");
    let headers = [("authorization", master.as_str())];
    let call = |method: &str, path: &str, body: serde_json::Value| {
        let resp = http::send_json(admin, method, path, &headers, &body.to_string())?;
        if !(200..300).contains(&resp.status) {
            bail!(
                "{method} {path} answered {}: {}",
                resp.status,
                resp.snippet(400)
            );
        }
        serde_json::from_str::<serde_json::Value>(resp.body.trim())
            .with_context(|| format!("{method} {path}: {}", resp.snippet(400)))
    };
    let limits = if slots {
        serde_json::json!({
            "rpm_limit": HIGH, "tpm_limit": HIGH, "concurrency_limit": 100_000,
            "budget_micro_usd": HIGH, "budget_period": "month",
        })
    } else {
        serde_json::json!({ "rpm_limit": HIGH, "tpm_limit": HIGH })
    };
    let user = call(
        "POST",
        "/api/users",
        serde_json::json!({
            "email": "bench@example.com", "password": "bench-password-0001", "role": "member",
        }),
    )?;
    let id = user["id"].as_i64().context("the created user has no id")?;
    call(
        "PATCH",
        &format!("/api/users/{id}"),
        serde_json::json!({ "limits": limits }),
    )?;
    let mut key = serde_json::json!({ "name": "bench", "user_id": id });
    if let (Some(key), Some(limits)) = (key.as_object_mut(), limits.as_object()) {
        key.extend(limits.clone());
    }
    let key = call("POST", "/api/keys", key)?;
    key["secret"]
        .as_str()
        .map(str::to_owned)
        .context("the created key has no secret")
}

/// Starts nginx as a reverse proxy to the mock, everything it writes kept under `work/nginx`.
pub fn start_nginx(
    nginx: &Path,
    work: &Path,
    upstream: SocketAddr,
    workers: usize,
    connections: usize,
) -> anyhow::Result<Target> {
    let prefix = work.join("nginx");
    fs::create_dir_all(&prefix)?;
    // Workers of a root master run as `nobody`: they must be able to reach the temp paths.
    fs::set_permissions(work, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(&prefix, fs::Permissions::from_mode(0o755))?;
    for dir in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let path = prefix.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777))?;
    }
    let port = free_port()?;
    let conf = prefix.join("nginx.conf");
    fs::write(
        &conf,
        nginx_conf(&prefix, port, upstream, workers, connections),
    )?;
    let log = prefix.join("error.log");
    let mut cmd = command(
        nginx,
        Stdio::null(),
        File::create(prefix.join("stderr.log"))?.into(),
    );
    cmd.arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .args(["-g", "daemon off;"]);
    let mut guard = ChildGuard::spawn("nginx", &mut cmd)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(START_TIMEOUT, "nginx", || {
        guard
            .check_running()
            .with_context(|| format!("see {}", log.display()))?;
        Ok(http::get(addr, "/_mock/stats").is_ok_and(|r| r.status == 200))
    })?;
    Ok(Target {
        name: "nginx",
        addr,
        log,
        auth: format!("Bearer {MASTER_KEY}"),
        admin: None,
        metrics: None,
        idle_rss_mib: 0.0,
        guard,
    })
}

/// The nginx config: keep-alive to the upstream, no response buffering (so streams flow
/// through as they arrive), no access log, and no per-connection request cap on either side.
/// `connections`: client connections each worker must hold at once (each also holds one
/// upstream connection).
pub fn nginx_conf(
    prefix: &Path,
    port: u16,
    upstream: SocketAddr,
    workers: usize,
    connections: usize,
) -> String {
    let p = prefix.display();
    let worker_connections = (2 * connections + 64).max(4096);
    format!(
        r#"worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
worker_rlimit_nofile {worker_connections};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    upstream mock {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

/// A port that was free a moment ago (bound to port 0, then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if ready()? {
            return Ok(());
        }
        procs::sleep(Duration::from_millis(50))?;
    }
    bail!("{what} was not ready within {timeout:?}")
}
