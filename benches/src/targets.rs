//! The three systems under test, each started on a free loopback port: the mock upstream
//! (the "direct" baseline), Tollgate proxying to it, and nginx proxying to it.

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

/// The client key the harness sends to Tollgate (`TOLLGATE_MASTER_KEY`).
pub const MASTER_KEY: &str = "tollgate-bench-master-key-0001";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running system that the load generator is pointed at.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub log: PathBuf,
    guard: ChildGuard,
}

impl Target {
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
    let mut guard = ChildGuard::spawn("tollgate-mock", &mut cmd)?;
    #[derive(Deserialize)]
    struct Listening {
        listening: SocketAddr,
    }
    let line = guard.first_stdout_line(START_TIMEOUT)?;
    let Listening { listening } =
        serde_json::from_str(&line).with_context(|| format!("tollgate-mock printed {line:?}"))?;
    wait_until(START_TIMEOUT, "tollgate-mock /_mock/stats", || {
        Ok(http::get(listening, "/_mock/stats").is_ok_and(|r| r.status == 200))
    })?;
    Ok(Target {
        name: "direct",
        addr: listening,
        log,
        guard,
    })
}

/// Starts `tollgate serve` with a passthrough config to the mock; `log` gets its stderr
/// (the default `info` level: one access-log line per request).
pub fn start_tollgate(
    bin_dir: &Path,
    work: &Path,
    upstream: SocketAddr,
    threads: usize,
    log: &Path,
) -> anyhow::Result<Target> {
    let data_dir = work.join("tollgate-data");
    fs::create_dir_all(&data_dir)?;
    let config = work.join("tollgate.yaml");
    fs::write(
        &config,
        format!(
            "server:\n  proxy_listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  \
             threads: {threads}\n  data_dir: '{}'\n\
             providers:\n  - {{name: upstream, kind: openai-compatible, base_url: 'http://{upstream}/v1'}}\n\
             models:\n  - {{name: gpt-4o-mini, deployments: [{{provider: upstream}}]}}\n",
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
        .env_remove("TOLLGATE_CONFIG");
    let mut guard = ChildGuard::spawn("tollgate", &mut cmd)?;
    #[derive(Deserialize)]
    struct Listening {
        proxy: SocketAddr,
        metrics: SocketAddr,
    }
    let line = guard.first_stdout_line(START_TIMEOUT)?;
    let Listening { proxy, metrics } =
        serde_json::from_str(&line).with_context(|| format!("tollgate printed {line:?}"))?;
    wait_until(START_TIMEOUT, "tollgate /readyz", || {
        guard.check_running()?;
        Ok(http::get(metrics, "/readyz").is_ok_and(|r| r.status == 200)
            && TcpStream::connect(proxy).is_ok())
    })?;
    Ok(Target {
        name: "tollgate",
        addr: proxy,
        log: log.to_path_buf(),
        guard,
    })
}

/// Starts nginx as a reverse proxy to the mock, everything it writes kept under `work/nginx`.
pub fn start_nginx(
    nginx: &Path,
    work: &Path,
    upstream: SocketAddr,
    workers: usize,
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
    fs::write(&conf, nginx_conf(&prefix, port, upstream, workers))?;
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
        guard,
    })
}

/// The nginx config: keep-alive to the upstream, no response buffering (so streams flow
/// through as they arrive), no access log, and no per-connection request cap on either side.
pub fn nginx_conf(prefix: &Path, port: u16, upstream: SocketAddr, workers: usize) -> String {
    let p = prefix.display();
    format!(
        r#"worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
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
