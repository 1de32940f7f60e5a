//! Probes beside the load scenarios, on the passthrough Tollgate: what idle client
//! connections cost it in memory, and whether a flood of admin logins (each an Argon2 hash)
//! slows the requests it proxies.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::http;
use crate::procs;
use crate::scenarios::{PATH, Scenario};

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Opens `n` connections that each send half a request head and then nothing, and reports
/// the gateway's memory before, with them open, and after they are gone.
pub fn idle_connections(pid: u32, addr: SocketAddr, n: usize) -> anyhow::Result<String> {
    raise_file_limit();
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr)
            .with_context(|| format!("connection {} of {n}", open.len() + 1))?;
        stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\n")?;
        open.push(stream);
    }
    // Well inside the header deadline (10 s), after which they are closed.
    procs::sleep(Duration::from_secs(2))?;
    let during = rss_kib(pid)?;
    drop(open);
    procs::sleep(Duration::from_secs(2))?;
    let after = rss_kib(pid)?;
    let per = (during.saturating_sub(before) as f64 * 1024.0 / n as f64) / 1024.0;
    Ok(format!(
        "{n} idle connections: RSS {:.1} MiB before, {:.1} MiB with them open ({per:.1} KiB each), {:.1} MiB after",
        before as f64 / 1024.0,
        during as f64 / 1024.0,
        after as f64 / 1024.0
    ))
}

/// The proxy's latency, sequential requests 5 ms apart for `duration`, alone and then while
/// `flooders` threads log in to the admin API back to back with the right password (the
/// harness's gateways allow 10000 logins a minute per address, so every one is hashed).
pub fn login_flood(
    proxy: SocketAddr,
    admin: SocketAddr,
    auth: &str,
    flooders: usize,
    duration: Duration,
) -> anyhow::Result<String> {
    let master = auth.to_string();
    let email = "flood@example.com";
    let password = "flood-password-0001";
    let created = http::send_json(
        admin,
        "POST",
        "/api/users",
        &[("authorization", master.as_str())],
        &serde_json::json!({ "email": email, "password": password, "role": "member" }).to_string(),
    )?;
    if created.status != 201 {
        bail!("creating the flood user: {}", created.snippet(300));
    }
    let quiet = latencies(proxy, auth, duration)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    let threads: Vec<_> = (0..flooders)
        .map(|_| {
            let (stop, ok, busy, body) = (stop.clone(), ok.clone(), busy.clone(), body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http::post_json(admin, "/api/auth/login", &[], &body) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => busy.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let flooded = latencies(proxy, auth, duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let flooded = flooded?;
    Ok(format!(
        "proxy p50/p99 {:.2}/{:.2} ms alone, {:.2}/{:.2} ms during a flood of {flooders} login loops \
         ({} logins served, {:.0}/s; {} refused or failed)",
        quiet.0,
        quiet.1,
        flooded.0,
        flooded.1,
        ok.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) as f64 / duration.as_secs_f64(),
        busy.load(Ordering::Relaxed),
    ))
}

/// p50 and p99 in ms of non-stream chat requests sent one after another, 5 ms apart.
fn latencies(proxy: SocketAddr, auth: &str, duration: Duration) -> anyhow::Result<(f64, f64)> {
    let body = Scenario::Latency.body();
    let end = Instant::now() + duration;
    let mut times = Vec::new();
    while Instant::now() < end {
        let started = Instant::now();
        let resp = http::post_json(proxy, PATH, &[("authorization", auth)], body)?;
        if resp.status != 200 {
            bail!("a proxied request got {}", resp.status);
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(5));
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok((at(0.5), at(0.99)))
}

fn raise_file_limit() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}
