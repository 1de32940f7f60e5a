//! Leased quotas across replicas: two gateways sharing Redis admit a large limit from
//! leased slices, and together never admit more than one exact GCRA with the same limit
//! would over the same time (its burst plus its refill), nor much less; a replica killed
//! while holding a slice never lets the fleet exceed the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Gateway, Mock, SharedStores, chat_body, client, mock_route};
use serde_json::json;

const SECRET: &str = "lease-test-secret-0123456789-abcdefghijklm";

/// What one exact GCRA with `rpm` admits over `elapsed` from a full bucket: the burst plus
/// what refills meanwhile.
fn gcra_bound(rpm: u64, elapsed: Duration) -> f64 {
    rpm as f64 + rpm as f64 * elapsed.as_secs_f64() / 60.0
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
}

/// Sends chat requests back to back on `workers` connections until `stop` is raised.
fn load(
    gateway: &Gateway,
    key: &str,
    workers: usize,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let url = gateway.url("/v1/chat/completions");
            let (key, tally, stop) = (key.to_string(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let http = client();
                let body = chat_body("gpt-4o-mini", false);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(resp) = http.post(&url).bearer_auth(&key).json(&body).send().await
                    else {
                        // The gateway was killed under this worker.
                        return;
                    };
                    match resp.status().as_u16() {
                        200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                        429 => tally.limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                    let _ = resp.bytes().await;
                }
            })
        })
        .collect()
}

/// Two replicas sharing `stores`, and their data directories.
async fn two_replicas(
    stores: &SharedStores,
    mock: &Mock,
) -> (Gateway, Gateway, [tempfile::TempDir; 2]) {
    let envs = stores.envs(SECRET);
    let route = mock_route(mock);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Gateway::spawn_in_env(dirs[0].path(), &route, "", &envs).await;
    let b = Gateway::spawn_in_env(dirs[1].path(), &route, "", &envs).await;
    (a, b, dirs)
}

async fn issue(gateway: &Gateway, rpm: u64) -> String {
    let (status, key) = gateway
        .admin(
            "POST",
            "/api/keys",
            Some(json!({ "name": "leased", "rpm_limit": rpm })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_string()
}

/// Requests a gateway admitted from leased slices (its `lease` quota checks).
async fn leased_admissions(gateway: &Gateway) -> u64 {
    let text = gateway.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with("tollgate_quota_check_seconds_count{store=\"lease\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Requests this gateway holds in leased slices right now.
async fn leased_requests(gateway: &Gateway) -> u64 {
    let text = gateway.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with("tollgate_quota_leased{dimension=\"requests\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_admit_what_one_exact_gcra_admits() {
    let stores = SharedStores::create("leases").await;
    let mock = Mock::spawn();
    let (a, b, _dirs) = two_replicas(&stores, &mock).await;
    let key = issue(&a, 6_000).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = load(&a, &key, 6, &tally, &stop);
    workers.extend(load(&b, &key, 6, &tally, &stop));
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();

    let ok = tally.ok.load(Ordering::Relaxed);
    let limited = tally.limited.load(Ordering::Relaxed);
    let bound = gcra_bound(6_000, elapsed);
    println!(
        "{elapsed:?}: {ok} admitted, {limited} refused; an exact GCRA admits {bound:.0}; leased: {} + {}",
        leased_admissions(&a).await,
        leased_admissions(&b).await
    );
    // The load stayed above the limit throughout: most requests were refused.
    assert!(
        limited as f64 > bound,
        "{limited} refused: the load was not above the limit"
    );
    assert!(ok as f64 <= bound, "{ok} admitted, more than {bound:.0}");
    assert!(
        ok as f64 >= 0.95 * bound,
        "{ok} admitted, under 95% of {bound:.0}"
    );
    // Both replicas admitted from leased slices, not only per-request reserves.
    assert!(leased_admissions(&a).await > 100);
    assert!(leased_admissions(&b).await > 100);
    assert_eq!(mock.stats().await["requests"]["chat_completions"], ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_holding_a_lease_never_lets_the_fleet_exceed_the_limit() {
    let stores = SharedStores::create("leasekill").await;
    let mock = Mock::spawn();
    let (mut a, b, _dirs) = two_replicas(&stores, &mock).await;
    // Large enough to be leased (slices of 75 requests), small enough that the load is
    // soon above it.
    let key = issue(&a, 600).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = load(&a, &key, 4, &tally, &stop);
    workers.extend(load(&b, &key, 4, &tally, &stop));
    // Killed while it holds a slice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leased_requests(&a).await == 0 {
        assert!(Instant::now() < deadline, "replica A never held a slice");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nix_kill(a.proc.pid());
    a.proc.wait();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    // What the upstream received is what the fleet admitted: the killed replica's last
    // requests reached it without their answers reaching the client.
    let ok = tally.ok.load(Ordering::Relaxed);
    let admitted = mock.stats().await["requests"]["chat_completions"]
        .as_u64()
        .unwrap();
    let bound = gcra_bound(600, elapsed);
    println!("{elapsed:?}: {admitted} admitted ({ok} answered); an exact GCRA admits {bound:.0}");
    assert!(admitted >= ok);
    assert!(
        admitted as f64 <= bound,
        "{admitted} admitted, more than {bound:.0}"
    );
    // The load was above the limit, and the survivor admitted from slices.
    assert!(tally.limited.load(Ordering::Relaxed) > 0);
    assert!(leased_admissions(&b).await > 0);
}

/// SIGKILL: the replica gets no chance to hand anything back.
fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
