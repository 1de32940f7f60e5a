//! Reloads the config without a restart: on SIGHUP, when the config file changes (its
//! modification time and size are checked every second), and when a stored provider
//! credential changes. The file is validated exactly as `check-config` does; if valid, the
//! route table (providers, deployments, prices, routing settings) and the model list are
//! swapped at once. Requests under way keep the snapshot they were admitted with, so no
//! stream is cut; deployments that still exist keep their health; JWT issuers are replaced
//! (their keys loaded first). If invalid, nothing changes and the problems are logged with
//! their file, line and path. Listener addresses and the other server settings are read at
//! start only (a changed listener is reported).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tollgate_core::{
    config::{Config, ServerSettings},
    secrets::ServerSecret,
};

use crate::{
    auth::jwt::JwtAuth,
    backend::Backend,
    downstream::models::ModelCatalog,
    live::{Live, LiveConfig},
    routing::RouteTable,
};

/// How often the config file is checked for a change.
const POLL: Duration = Duration::from_secs(1);

pub struct ConfigReloader {
    pub path: PathBuf,
    pub live: LiveConfig,
    pub backend: Arc<Backend>,
    pub secret: Arc<ServerSecret>,
    /// The in-process mock upstream, for `kind: mock` providers (none: they cannot be added).
    pub mock_addr: Option<SocketAddr>,
    /// The server settings the process started with.
    pub server: ServerSettings,
    /// When the model list was first built (`created` of `GET /v1/models`).
    pub created: u64,
    pub reloads: IntCounterVec,
    /// Told when a stored provider credential changed (here or, through Redis, elsewhere).
    pub credentials_changed: Arc<Notify>,
    pub jwt: Arc<JwtAuth>,
}

impl ConfigReloader {
    /// Reads, validates and applies the config file; the summary logged, or why not.
    pub async fn reload(&self) -> Result<String, String> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut config = Config::from_yaml(&text, &self.path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
        .map_err(|e| e.to_string())?;
        let (db, secret) = (self.backend.db.clone(), self.secret.clone());
        let resolved = self
            .backend
            .run(async move {
                super::resolve_credentials(&mut config, &db, &secret)
                    .await
                    .map(|()| config)
            })
            .await
            .ok_or_else(|| {
                "the database did not answer while reading provider credentials".to_string()
            })?
            .map_err(|e| e.to_string())?;
        let config = resolved;
        self.report_fixed_settings(&config.server);
        let upstreams = super::upstreams(&config, self.mock_addr).map_err(|e| e.to_string())?;
        // Issuers first: their keys may fail to load, and then nothing changes.
        self.jwt
            .reload(&config.jwt_issuers)
            .await
            .map_err(|e| e.to_string())?;
        let previous = self.live.load();
        let routes = Arc::new(RouteTable::new(&config, &upstreams, Some(&previous.routes)));
        let summary = format!(
            "{} providers, {} models",
            config.providers.len(),
            config.models.len()
        );
        self.live.store(Arc::new(Live {
            routes,
            models: ModelCatalog::new(&config, self.created),
        }));
        Ok(summary)
    }

    /// Listeners and other server settings are not reloaded: say so when they differ.
    fn report_fixed_settings(&self, new: &ServerSettings) {
        let old = &self.server;
        let listeners = [
            ("proxy_listen", old.proxy_listen, new.proxy_listen),
            ("admin_listen", old.admin_listen, new.admin_listen),
            ("metrics_listen", old.metrics_listen, new.metrics_listen),
        ];
        for (name, was, now) in listeners {
            if was != now {
                tracing::warn!(
                    "config reload: server.{name} changed from {was} to {now}; listeners are not moved by a reload, restart to apply it"
                );
            }
        }
    }

    async fn apply(&self, why: &str) {
        match self.reload().await {
            Ok(summary) => {
                self.reloads.with_label_values(&["ok"]).inc();
                tracing::info!("config reloaded ({why}): {summary}");
            }
            Err(problems) => {
                self.reloads.with_label_values(&["error"]).inc();
                tracing::error!(
                    "config reload ({why}) failed; the running config stays:\n{problems}"
                );
            }
        }
    }
}

/// The file's identity for change detection: modification time and length.
async fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("config reload on SIGHUP is unavailable: {e}");
                None
            }
        };
        let mut seen = stamp(&self.path).await;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    seen = stamp(&self.path).await;
                    self.apply("SIGHUP").await;
                }
                () = self.credentials_changed.notified() => {
                    self.apply("a stored provider credential changed").await;
                }
                _ = tick.tick() => {
                    let now = stamp(&self.path).await;
                    if now.is_some() && now != seen {
                        seen = now;
                        self.apply("the config file changed").await;
                    }
                }
            }
        }
    }
}
