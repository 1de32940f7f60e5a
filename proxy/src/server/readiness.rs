//! Whether this replica should get traffic (`/readyz`), and the graceful shutdown that
//! drains it: on SIGTERM `/readyz` fails at once so a load balancer stops sending, the
//! replica goes on serving for `server.drain_delay`, then answers new requests with 503 and
//! exits as soon as nothing is in flight (at the latest when `server.shutdown_grace` ends).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use prometheus::IntGauge;
use serde_json::{Value, json};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::Instant,
};

use crate::backend::Backend;

/// How long each dependency check of `/readyz` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Readiness {
    backend: Arc<Backend>,
    /// The proxy listener, checked by connecting to it (`None` for `tollgate admin`).
    proxy: Option<SocketAddr>,
    /// A Redis outage is served through (`quota.on_store_error: fail_open`).
    redis_optional: bool,
    keys_warm: AtomicBool,
    /// SIGTERM arrived: `/readyz` fails; requests are still served.
    draining: AtomicBool,
    /// The drain delay is over: new requests are refused.
    stopping: AtomicBool,
}

impl Readiness {
    pub fn new(backend: Arc<Backend>, proxy: Option<SocketAddr>, redis_optional: bool) -> Self {
        Readiness {
            backend,
            proxy,
            redis_optional,
            // Only the proxy warms a key cache.
            keys_warm: AtomicBool::new(proxy.is_none()),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn keys_warmed(&self) {
        self.keys_warm.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Checks every dependency; `(ready, report)`. The report names each check's state.
    pub async fn check(&self) -> (bool, Value) {
        let (proxy, database, redis) =
            tokio::join!(self.proxy_ok(), self.database_ok(), self.redis_ok());
        let keys = self.keys_warm.load(Ordering::Acquire);
        let draining = self.draining();
        let redis_state = match redis {
            None => "not configured",
            Some(true) => "ok",
            Some(false) if self.redis_optional => "unreachable (fail_open: served without it)",
            Some(false) => "unreachable",
        };
        let ready =
            !draining && proxy && database && (redis != Some(false) || self.redis_optional) && keys;
        let state = |ok: bool| if ok { "ok" } else { "failing" };
        let report = json!({
            "status": if draining { "draining" } else if ready { "ready" } else { "not ready" },
            "checks": {
                "config": "loaded",
                "proxy_listener": if self.proxy.is_some() { state(proxy) } else { "not served here" },
                "database": state(database),
                "redis": redis_state,
                "key_cache": if keys { "warm" } else { "warming" },
            }
        });
        (ready, report)
    }

    async fn proxy_ok(&self) -> bool {
        let Some(mut target) = self.proxy else {
            return true;
        };
        if target.ip().is_unspecified() {
            target.set_ip(if target.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(target)).await,
            Ok(Ok(_))
        )
    }

    async fn database_ok(&self) -> bool {
        let db = self.backend.db.clone();
        let ping = self
            .backend
            .run(async move { tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await });
        matches!(ping.await, Some(Ok(Ok(()))))
    }

    /// `None` when no Redis is configured.
    async fn redis_ok(&self) -> Option<bool> {
        let client = self.backend.redis.clone()?;
        let ping = self.backend.run(async move {
            use fred::interfaces::ClientLike;
            tokio::time::timeout(CHECK_TIMEOUT, client.ping::<String>(None)).await
        });
        Some(matches!(ping.await, Some(Ok(Ok(_)))))
    }
}

/// The gateway's shutdown signals: SIGTERM drains (see the module docs), SIGINT stops at
/// once, SIGQUIT hands the listeners to a new process (Pingora's upgrade).
pub struct DrainingShutdown {
    pub readiness: Arc<Readiness>,
    pub in_flight: IntGauge,
    pub drain_delay: Duration,
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot listen for shutdown signals: stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        let deadline = Instant::now() + self.grace;
        self.readiness.draining.store(true, Ordering::Release);
        tracing::info!(
            "SIGTERM: /readyz fails from now; serving for {:?} more, then refusing new requests and stopping once none is in flight (at most {:?})",
            self.drain_delay.min(self.grace),
            self.grace
        );
        let draining = async {
            tokio::time::sleep_until((Instant::now() + self.drain_delay).min(deadline)).await;
            self.readiness.stopping.store(true, Ordering::Release);
            while self.in_flight.get() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = draining => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        let left = self.in_flight.get();
        if left > 0 {
            tracing::warn!("shutdown grace period over: cutting {left} requests still in flight");
        } else {
            tracing::info!("nothing in flight: stopping");
        }
        ShutdownSignal::GracefulTerminate
    }
}
