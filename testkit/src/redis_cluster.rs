//! A three-primary Redis Cluster of the machine's own `redis-server`, made for one test
//! (`redis-cli --cluster create`) and stopped when its handle goes.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

pub struct RedisCluster {
    /// A `redis-cluster://` URL naming every primary.
    pub url: String,
    nodes: Vec<Child>,
    dir: tempfile::TempDir,
}

const PRIMARIES: usize = 3;

impl RedisCluster {
    /// Starts the cluster and waits until it serves every slot. Ports are picked free just
    /// before the servers bind them; a start that loses one to another process is retried.
    pub fn start() -> RedisCluster {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("a Redis Cluster could not be started: {last}");
    }

    fn try_start() -> Result<RedisCluster, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        // A data port and a cluster-bus port per node.
        let probes: Vec<TcpListener> = (0..2 * PRIMARIES)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("picking ports: {e}"))?;
        let ports: Vec<u16> = probes
            .iter()
            .map(|p| p.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("picking ports: {e}"))?;
        drop(probes);
        let mut cluster = RedisCluster {
            url: String::new(),
            nodes: Vec::new(),
            dir,
        };
        let dir = cluster.dir.path().to_path_buf();
        for node in 0..PRIMARIES {
            let child = node_command(&dir, ports[node], ports[PRIMARIES + node])
                .spawn()
                .map_err(|e| format!("starting redis-server: {e}"))?;
            cluster.nodes.push(child);
        }
        let data = &ports[..PRIMARIES];
        for &port in data {
            wait_for(|| cli(port, &["ping"]).is_some_and(|out| out.trim() == "PONG"))
                .map_err(|_| format!("redis-server on {port} did not answer"))?;
        }
        let mut create = vec!["--cluster".to_string(), "create".to_string()];
        create.extend(data.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let created = Command::new("redis-cli")
            .args(&create)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        for &port in data {
            wait_for(|| {
                cli(port, &["cluster", "info"]).is_some_and(|out| out.contains("cluster_state:ok"))
            })
            .map_err(|_| format!("the cluster node on {port} never reported cluster_state:ok"))?;
        }
        cluster.url = format!(
            "redis-cluster://127.0.0.1:{}?{}",
            data[0],
            data[1..]
                .iter()
                .map(|p| format!("node=127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        Ok(cluster)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

fn node_command(dir: &Path, port: u16, bus: u16) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--cluster-port")
        .arg(bus.to_string())
        .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
        .arg("--cluster-config-file")
        .arg(dir.join(format!("nodes-{port}.conf")))
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    Err(())
}
