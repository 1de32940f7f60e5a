//! Test harness: spawns the real `tollgate` and `tollgate-mock` binaries on port 0 with
//! temporary configs, learns their ports from the JSON line they print, and kills them on
//! drop. Every test gets its own processes, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod relay;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const MASTER_KEY: &str = "tg_master_test_0123456789abcdef";

/// A running child process, killed when dropped.
pub struct Proc {
    child: Child,
    pub stdout_line: serde_json::Value,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self, field: &str) -> SocketAddr {
        self.stdout_line[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.stdout_line))
            .parse()
            .unwrap()
    }

    /// Sends SIGTERM (a graceful shutdown) and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// Starts `cmd` and waits for the JSON line it prints once listening.
fn spawn(cmd: Command) -> Proc {
    spawn_with_stderr(cmd, Stdio::inherit())
}

/// As [`spawn`], the child's stderr going to `stderr`.
fn spawn_with_stderr(mut cmd: Command, stderr: Stdio) -> Proc {
    cmd.stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("{cmd:?} did not report its address");
        }
    };
    let stdout_line =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad start-up line {line:?}: {e}"));
    Proc { child, stdout_line }
}

/// Path of a binary of another workspace package, built next to this test's binary.
fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub struct Mock {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Mock {
    pub fn spawn() -> Mock {
        Mock::spawn_with(&[])
    }

    pub fn spawn_with(args: &[&str]) -> Mock {
        let mut cmd = Command::new(sibling_binary("tollgate-mock"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let proc = spawn(cmd);
        let addr = proc.addr("listening");
        Mock { proc, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/_mock/stats", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Zeroes the mock's counters.
    pub async fn reset(&self) {
        let resp = client()
            .post(format!("http://{}/_mock/reset", self.addr))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    pub async fn requests(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/_mock/requests", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// The Prometheus text of the metrics listener.
    pub async fn metrics_text(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Starts `tollgate serve` with `providers:` and `models:` YAML; listeners on port 0.
    pub async fn spawn(providers_and_models: &str) -> Gateway {
        Gateway::spawn_with_server(providers_and_models, "").await
    }

    pub async fn spawn_with_server(providers_and_models: &str, server_extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = Gateway::spawn_in(dir.path(), providers_and_models, server_extra).await;
        gateway._dir = Some(dir);
        gateway
    }

    /// The config file `spawn_in` writes into `dir`.
    pub fn write_config(
        dir: &std::path::Path,
        providers_and_models: &str,
        server_extra: &str,
    ) -> PathBuf {
        let config = format!(
            "server:\n  proxy_listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n  threads: 1\n  data_dir: {}\n{server_extra}{providers_and_models}",
            dir.join("data").display()
        );
        let path = dir.join("tollgate.yaml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Starts a gateway whose config and data directory live in `dir` (kept by the caller,
    /// so that several gateways can share a database one after another).
    pub async fn spawn_in(
        dir: &std::path::Path,
        providers_and_models: &str,
        server_extra: &str,
    ) -> Gateway {
        Gateway::spawn_in_env(dir, providers_and_models, server_extra, &[]).await
    }

    /// As [`Gateway::spawn_in`], with extra environment variables.
    pub async fn spawn_in_env(
        dir: &std::path::Path,
        providers_and_models: &str,
        server_extra: &str,
        envs: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start(
            "serve",
            dir,
            providers_and_models,
            server_extra,
            envs,
            Stdio::inherit(),
        )
        .await
    }

    /// As [`Gateway::spawn_in_env`], its log (stderr) written to `log`.
    pub async fn spawn_logged(
        dir: &std::path::Path,
        providers_and_models: &str,
        server_extra: &str,
        envs: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Gateway {
        let file = std::fs::File::create(log).unwrap();
        Gateway::start(
            "serve",
            dir,
            providers_and_models,
            server_extra,
            envs,
            file.into(),
        )
        .await
    }

    /// Starts `tollgate admin` (the admin API and metrics listener alone); its `addr` is
    /// the admin listener's, like `admin`.
    pub async fn spawn_admin(
        dir: &std::path::Path,
        providers_and_models: &str,
        envs: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start(
            "admin",
            dir,
            providers_and_models,
            "",
            envs,
            Stdio::inherit(),
        )
        .await
    }

    async fn start(
        command: &str,
        dir: &std::path::Path,
        providers_and_models: &str,
        server_extra: &str,
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> Gateway {
        let path = Gateway::write_config(dir, providers_and_models, server_extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg(command)
            .arg("--config")
            .arg(&path)
            .env("TOLLGATE_MASTER_KEY", MASTER_KEY)
            .env("RUST_LOG", "warn")
            .env_remove("TOLLGATE_DATABASE_URL")
            .env_remove("TOLLGATE_REDIS_URL")
            .env_remove("TOLLGATE_REDIS_PREFIX")
            .envs(envs.iter().copied());
        let proc = spawn_with_stderr(cmd, stderr);
        if command == "admin" {
            let admin = proc.addr("admin");
            let metrics = proc.addr("metrics");
            let gateway = Gateway {
                proc,
                addr: admin,
                admin,
                metrics,
                _dir: None,
            };
            gateway.wait_ready().await;
            return gateway;
        }
        let addr = proc.addr("proxy");
        let admin = proc.addr("admin");
        let metrics = proc.addr("metrics");
        let gateway = Gateway {
            proc,
            addr,
            admin,
            metrics,
            _dir: None,
        };
        gateway.wait_ready().await;
        gateway
    }

    /// Waits until the gateway serves: `/readyz` answers and its listener accepts
    /// connections. A dependency some tests take away on purpose (Redis) may keep it from
    /// being ready; that is for the test to look at.
    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.metrics);
        for _ in 0..1200 {
            if let Ok(resp) = reqwest::get(&url).await {
                let ready = resp.status() == 200;
                let report: serde_json::Value = resp.json().await.unwrap_or_default();
                let serving = ["ok", "not served here"]
                    .contains(&report["checks"]["proxy_listener"].as_str().unwrap_or(""));
                if ready || (serving && report["checks"]["key_cache"] == "warm") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gateway at {} never became ready", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST with the master key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        client().post(self.url(path)).bearer_auth(MASTER_KEY)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        client().get(self.url(path)).bearer_auth(MASTER_KEY)
    }

    /// A call to the admin API with the master key; returns status and JSON body.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = client()
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.admin),
            )
            .bearer_auth(MASTER_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A chat completion with `key`; returns the status and body.
    pub async fn chat_as(&self, key: &str, model: &str) -> (u16, serde_json::Value) {
        let resp = client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body(model, false))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Providers and models that route `gpt-4o-mini` to a mock binary.
pub fn mock_route(mock: &Mock) -> String {
    format!(
        "providers:\n  - {{name: upstream, kind: openai-compatible, base_url: '{}'}}\nmodels:\n  - name: gpt-4o-mini\n    aliases: [mini]\n    deployments: [{{provider: upstream}}]\n",
        mock.url()
    )
}

/// Sends a non-stream chat request; its status and JSON body (null if it has none).
pub async fn send_chat(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say something deterministic."}],
        "stream": stream,
    })
}

/// The OpenAI error object of a response, asserting the status.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status(), status, "unexpected status");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].clone();
    assert!(
        error["message"].is_string(),
        "not an OpenAI error body: {body}"
    );
    assert!(
        error["type"].is_string(),
        "not an OpenAI error body: {body}"
    );
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "not an OpenAI error body: {body}"
    );
    error
}

#[allow(unused_imports)]
pub use tollgate_testkit::PgDatabase;

/// A PostgreSQL database and a Redis key space of their own, shared by several gateway
/// processes as replicas share them.
pub struct SharedStores {
    pub db: PgDatabase,
    redis: String,
    prefix: String,
}

impl SharedStores {
    pub async fn create(tag: &str) -> SharedStores {
        SharedStores {
            db: PgDatabase::create(tag).await,
            redis: std::env::var("TOLLGATE_TEST_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!("tgtest{}", fastrand::u64(..)),
        }
    }

    /// The environment of a gateway that uses them; `secret` encrypts stored credentials.
    pub fn envs<'a>(&'a self, secret: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("TOLLGATE_DATABASE_URL", self.db.url.as_str()),
            ("TOLLGATE_REDIS_URL", self.redis.as_str()),
            ("TOLLGATE_REDIS_PREFIX", self.prefix.as_str()),
            ("TOLLGATE_SECRET_KEY", secret),
        ]
    }
}
