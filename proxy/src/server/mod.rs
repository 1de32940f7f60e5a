//! Assembles the gateway process: binds the listeners, starts the in-process mock upstream
//! when the config uses one, and runs the proxy, metrics and mock as Pingora services.

pub mod admin_service;
pub mod listeners;
pub mod mock_upstream;
pub mod readiness;
mod reload;
pub mod tls;
pub mod trust_store;

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use pingora::{
    listeners::ListenerConfig,
    prelude::Opt,
    protocols::l4::stream::L4BufferSettings,
    server::{Server, configuration::ServerConf},
    services::{background::background_service, listening::Service},
};
use tollgate_core::config::{Config, ConnectionSettings, OnStoreError, ProviderKind};
use url::Url;

use tollgate_admin::{
    AdminSettings, DeploymentRoute, ModelRoute, RouteSource, TlsAcceptorSource,
    throttle::AttemptStore,
};
use tollgate_core::secrets::ServerSecret;

use crate::{
    auth::client_keys::ClientKeys,
    auth::invalidation,
    auth::jwt::JwtAuth,
    auth::secret_key::{self, SecretSource},
    auth::{Auth, MasterKey},
    backend::Backend,
    backend::database,
    backend::login_attempts::RedisAttempts,
    backend::pubsub,
    cache::ResponseCache,
    cli::users,
    downstream::{connection::Front, models::ModelCatalog},
    gateway::Gateway,
    live::{self, LiveConfig},
    metering::Meter,
    metrics::{Metrics, MetricsService, deployments::DeploymentCollector},
    quota::leases::{self, LeaseBook},
    quota::limiter::Limiter,
    quota::{MemoryStore, RedisStore},
    routing::RouteTable,
    server::admin_service::AdminService,
    server::listeners::{bind, connection_limits, reserve},
    server::mock_upstream::MockUpstreamService,
    server::readiness::{DrainingShutdown, Readiness},
    server::tls::Certificates,
    upstream::Upstream,
};

/// Where the process ended up listening; printed as one JSON line on stdout at start-up so
/// that scripts and tests using port 0 learn the real ports.
#[derive(serde::Serialize)]
struct Listening {
    proxy: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    mock_upstream: Option<SocketAddr>,
}

/// What both `serve` and `serve_admin` start from.
struct Prepared {
    config: Config,
    master_key: MasterKey,
    /// Where the master key was generated and kept, if it was.
    key_file: Option<std::path::PathBuf>,
    database_url: String,
    secret: Arc<ServerSecret>,
}

/// Reads the config, the master key and the server secret, and migrates the database.
fn prepare(config_path: &Path) -> anyhow::Result<Prepared> {
    let mut config =
        Config::from_file(config_path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let (master_key, key_file) = MasterKey::load(&config.server.data_dir)?;
    let database_url = database::database_url(&config.server.data_dir)?;
    let secret = load_secret(&config.server.data_dir, &database_url)?;
    prepare_database(&mut config, &secret)?;
    Ok(Prepared {
        config,
        master_key,
        key_file,
        database_url,
        secret,
    })
}

/// Runs the gateway until it is told to stop (SIGTERM: gracefully; SIGINT: at once).
pub fn serve(config_path: &Path) -> anyhow::Result<()> {
    crate::memory::start_purging();
    let Prepared {
        config,
        master_key,
        key_file,
        database_url,
        secret,
    } = prepare(config_path)?;
    let redis_url = redis_url();
    let backend = Arc::new(Backend::start(&database_url, redis_url.as_deref())?);
    let client_keys = ClientKeys::new(secret.clone(), backend.clone());
    let jwt = JwtAuth::start(&config.jwt_issuers, backend.clone())?;
    // Rings when a stored provider credential changes, here or on another replica.
    let credentials_changed = Arc::new(tokio::sync::Notify::new());
    if let Some(path) = key_file {
        tracing::warn!(
            "TOLLGATE_MASTER_KEY is not set: clients authenticate with the generated key stored in {}",
            path.display()
        );
    }

    let mock = config.providers.iter().any(|p| p.kind.in_process());
    let mock_listener = if mock {
        Some(bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "in-process mock upstream",
        )?)
    } else {
        None
    };
    let mock_addr = mock_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

    let upstreams = upstreams(&config, mock_addr)?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let live = live::live(
        Arc::new(RouteTable::new(&config, &upstreams, None)),
        ModelCatalog::new(&config, created),
    );

    let certificates = tls_certificates(&config, backend.handle())?;
    let admin_listener = bind(config.server.admin_listen, "admin")?;
    let admin_addr = admin_listener.local_addr()?;
    let metrics_listener = bind(config.server.metrics_listen, "metrics")?;
    let metrics_addr = metrics_listener.local_addr()?;
    // Held until the process exits (see `ReservedPort`).
    let proxy_port = reserve(config.server.proxy_listen)?;
    let proxy_addr = proxy_port.addr;
    let readiness = Arc::new(Readiness::new(
        backend.clone(),
        Some(proxy_addr),
        config.quota.on_store_error == OnStoreError::FailOpen,
    ));
    warm_keys(&backend, &client_keys, &readiness);
    crate::metering::retention::make_partitions(backend.db.clone(), backend.handle());
    if let Some(retention) = config.usage.retention {
        crate::metering::retention::start(backend.db.clone(), retention, backend.handle());
    }

    let redis_prefix = crate::backend::redis::prefix();
    let cache = ResponseCache::new(
        &config.cache,
        backend
            .redis
            .clone()
            .map(|client| (client, redis_prefix.as_str())),
    )?;
    let mut admin = AdminService::new(
        admin_listener,
        database_url,
        secret.clone(),
        master_key.expose().to_string(),
        admin_settings(
            &config,
            live_routes(live.clone()),
            tls_source(&certificates),
        ),
        invalidation::hook(
            Some((
                client_keys.clone(),
                jwt.clone(),
                credentials_changed.clone(),
            )),
            backend.clone(),
        ),
        login_attempts(&backend),
    );
    admin.cache = Some(cache.clone());
    if let Some(url) = &redis_url {
        let listeners = [
            Some(invalidation::listener(
                client_keys.clone(),
                jwt.clone(),
                credentials_changed.clone(),
            )),
            cache.purge_listener(),
        ];
        pubsub::listen(
            url,
            backend.handle(),
            listeners.into_iter().flatten().collect(),
        );
    }
    let mut metrics = Metrics::register()?;
    metrics.access_log = config.log.access;
    prometheus::register(Box::new(DeploymentCollector::new(live.clone())?))?;
    let reloader = reload::ConfigReloader {
        path: config_path.to_path_buf(),
        live: live.clone(),
        backend: backend.clone(),
        secret: secret.clone(),
        mock_addr,
        server: config.server.clone(),
        created,
        reloads: metrics.config_reloads.clone(),
        credentials_changed: credentials_changed.clone(),
        jwt: jwt.clone(),
    };
    let limiter = limiter(&backend, &config, &metrics);
    let meter = Arc::new(Meter::start(
        backend.clone(),
        limiter.clone(),
        config.server.data_dir.join("usage-spill.jsonl"),
        metrics.usage_events.clone(),
    ));
    limiter.set_meter(&meter);

    let flushing = meter.clone();
    let shutdown = DrainingShutdown {
        readiness: readiness.clone(),
        in_flight: metrics.in_flight.clone(),
        drain_delay: config.server.drain_delay,
        grace: config.server.shutdown_grace,
    };
    let gateway = Gateway {
        live: live.clone(),
        auth: Auth {
            master: master_key,
            keys: client_keys,
            jwt,
        },
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: config.server.connections.body_timeout,
        readiness: readiness.clone(),
        metrics,
        limiter,
        meter,
        cache,
    };

    let conf = ServerConf {
        threads: config.server.threads,
        // SIGTERM: `DrainingShutdown` has waited for in-flight requests (or the grace
        // period) before Pingora is told to stop; nothing is left to wait for then.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(2),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let connections = connection_limits(&config.server.connections);
    let front = Front::new(
        pingora::proxy::http_proxy(&server.configuration, gateway),
        connections,
        config.metering.drain,
    );
    let mut proxy = Service::new("tollgate proxy".to_string(), front);
    // Requests are read into the gateway's own buffers: a 64 KiB read buffer per connection
    // (Pingora's default) would only be copied through, and idle connections would hold it.
    let mut listener =
        ListenerConfig::tcp(proxy_addr.to_string()).l4_buffer(L4BufferSettings::new(0, 1460));
    if let Some(certificates) = &certificates {
        listener = listener.tls(certificates.proxy_settings()?);
    }
    proxy.add_listener(listener);
    server.add_service(proxy);

    server.add_service(background_service("admin API", admin));
    let mut metrics =
        background_service("metrics", MetricsService::new(metrics_listener, readiness));
    metrics.threads = Some(1);
    server.add_service(metrics);
    let mut reloading = background_service("config reload", reloader);
    reloading.threads = Some(1);
    server.add_service(reloading);
    let mut checking = background_service(
        "deployment health checks",
        crate::routing::checks::HealthChecks { live: live.clone() },
    );
    checking.threads = Some(1);
    server.add_service(checking);
    if let Some(listener) = mock_listener {
        server.add_service(background_service(
            "mock upstream",
            MockUpstreamService::new(listener),
        ));
    }

    let listening = Listening {
        proxy: proxy_addr,
        admin: admin_addr,
        metrics: metrics_addr,
        mock_upstream: mock_addr,
    };
    println!("{}", serde_json::to_string(&listening)?);
    crate::memory::start_up_over();
    tracing::info!(
        "tollgate listening: proxy http://{proxy_addr}/v1, admin http://{admin_addr}/api, metrics http://{metrics_addr}/metrics, {} models",
        config.models.len()
    );
    server.run(pingora::server::RunArgs {
        shutdown_signal: Box::new(shutdown),
    });
    drop(proxy_port);
    // Every request has ended: write the usage events still queued before exiting.
    backend.handle().block_on(async {
        if tokio::time::timeout(std::time::Duration::from_secs(10), flushing.flush())
            .await
            .is_err()
        {
            tracing::error!("usage events could not be written before exiting");
        }
    });
    Ok(())
}

/// How many recently used keys are loaded into the key cache at start.
const WARM_KEYS: u64 = 2_000;

/// Loads the most recently used keys into the cache in the background; `/readyz` waits
/// for it (a failure is logged and does not hold readiness back: keys are then read on
/// first use).
fn warm_keys(backend: &Backend, keys: &Arc<ClientKeys>, readiness: &Arc<Readiness>) {
    let (keys, readiness) = (keys.clone(), readiness.clone());
    backend.handle().spawn(async move {
        match keys.warm(WARM_KEYS).await {
            Ok(n) => tracing::info!("key cache warmed with the {n} most recently used keys"),
            Err(e) => tracing::warn!("warming the key cache failed: {e:#}"),
        }
        readiness.keys_warmed();
    });
}

/// The upstream of each provider, indexed like `config.providers`; `kind: mock` providers
/// go to the in-process mock upstream.
fn upstreams(config: &Config, mock_addr: Option<SocketAddr>) -> anyhow::Result<Vec<Arc<Upstream>>> {
    config
        .providers
        .iter()
        .map(|p| {
            let base_url = match (&p.base_url, mock_addr) {
                (Some(url), _) => url.clone(),
                // Anthropic's paths carry their version (`/v1/messages`).
                (None, Some(addr)) if p.kind == ProviderKind::AnthropicMock => {
                    Url::parse(&format!("http://{addr}"))?
                }
                (None, Some(addr)) => Url::parse(&format!("http://{addr}/v1"))?,
                (None, None) => anyhow::bail!(
                    "provider {} has no base_url (a `kind: mock` provider needs the mock upstream started with the gateway: restart to add the first one)",
                    p.name
                ),
            };
            Upstream::new(p, base_url).map(Arc::new)
        })
        .collect()
}

/// Brings the database schema up to date, creates the first admin and decrypts the stored
/// provider credentials the config refers to, before anything serves. Runs on a short-lived
/// runtime: Pingora's services each start their own.
fn prepare_database(config: &mut Config, secret: &ServerSecret) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    database::with_migrated(&data_dir, async |url, db, applied| {
        if !applied.is_empty() {
            tracing::info!(
                "applied {} database migrations to {}",
                applied.len(),
                database::redact(url)
            );
        }
        users::bootstrap_admin(db).await?;
        resolve_credentials(config, db, secret).await
    })
}

/// Fills in `api_key` of providers that name a stored credential.
async fn resolve_credentials(
    config: &mut Config,
    db: &sea_orm_migration::sea_orm::DatabaseConnection,
    secret: &ServerSecret,
) -> anyhow::Result<()> {
    use tollgate_core::{config::Secret, store::providers};
    let wanted = config.providers.iter().any(|p| p.credential.is_some());
    if !wanted {
        return Ok(());
    }
    let stored = providers::list_credentials(db).await?;
    for provider in &mut config.providers {
        let Some(name) = &provider.credential else {
            continue;
        };
        let credential = stored.iter().find(|c| &c.name == name).ok_or_else(|| {
            anyhow::anyhow!(
                "provider {}: no stored credential named {name:?} (create it with POST /api/providers)",
                provider.name
            )
        })?;
        let plaintext = providers::open_secret(secret, credential)
            .map_err(|e| anyhow::anyhow!("provider {}: credential {name:?}: {e}", provider.name))?;
        provider.api_key = Some(Secret::new(&plaintext));
    }
    Ok(())
}

/// The server secret, with a loud warning when it is the generated development one.
pub fn load_secret(data_dir: &Path, database_url: &str) -> anyhow::Result<Arc<ServerSecret>> {
    let (secret, source) = secret_key::load(data_dir, secret_key::production_mode(database_url))?;
    if let SecretSource::DevFile(path) = source {
        tracing::warn!(
            "TOLLGATE_SECRET_KEY is not set: using a generated development secret from {}. \
             Set TOLLGATE_SECRET_KEY (the same on every replica) before going to production.",
            path.display()
        );
    }
    Ok(Arc::new(secret))
}

/// Admin login attempts are counted in Redis when there is one.
fn login_attempts(backend: &Backend) -> Option<Arc<dyn AttemptStore>> {
    let client = backend.redis.clone()?;
    let store = RedisAttempts::new(client, &crate::backend::redis::prefix());
    Some(Arc::new(store))
}

/// `server.tls` loaded, and watched for renewals on `runtime`.
fn tls_certificates(
    config: &Config,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<Arc<Certificates>>> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let certificates = Certificates::load(files)?;
    certificates.watch(runtime);
    Ok(Some(certificates))
}

fn tls_source(certificates: &Option<Arc<Certificates>>) -> Option<Arc<dyn TlsAcceptorSource>> {
    certificates
        .clone()
        .map(|c| c as Arc<dyn TlsAcceptorSource>)
}

pub fn admin_settings(
    config: &Config,
    routes: RouteSource,
    tls: Option<Arc<dyn TlsAcceptorSource>>,
) -> AdminSettings {
    AdminSettings {
        token_ttl: config.server.admin_token_ttl,
        rotation_grace: config.server.key_rotation_grace,
        login_attempts: config.server.admin_login_attempts,
        connections: ConnectionSettings {
            max_connections: connection_limits(&config.server.connections).max_connections,
            ..config.server.connections
        },
        routes,
        cors_origins: config.server.admin_cors_origins.clone(),
        tls,
    }
}

/// The models as configured, for the admin API alone (`tollgate admin`: no gateway here,
/// so no live state). Never a provider's key.
fn configured_routes(config: &Config) -> RouteSource {
    RouteSource::fixed(
        config
            .models
            .iter()
            .map(|m| ModelRoute {
                name: m.name.clone(),
                aliases: m.aliases.clone(),
                strategy: m.strategy.as_str().to_string(),
                retries: m.retries,
                fallbacks: m.fallbacks.clone(),
                input_micro_usd_per_million: m.pricing.map(|p| p.input_micro_usd_per_million),
                output_micro_usd_per_million: m.pricing.map(|p| p.output_micro_usd_per_million),
                deployments: m
                    .deployments
                    .iter()
                    .filter_map(|d| {
                        let provider = config.providers.get(d.provider)?;
                        Some(DeploymentRoute {
                            provider: provider.name.clone(),
                            kind: provider.kind.as_str().to_string(),
                            base_url: provider.base_url.as_ref().map(Url::to_string),
                            upstream_model: d.upstream_model.clone(),
                            weight: d.weight,
                            rpm: d.rpm,
                            tpm: d.tpm,
                            state: None,
                            in_flight: None,
                            ttfb_ms: None,
                            last_error: None,
                        })
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// The running gateway's routes, from its current table (after any reload), with each
/// deployment's live state on this replica. Never a provider's key.
fn live_routes(live: LiveConfig) -> RouteSource {
    RouteSource::new(move || {
        let now = std::time::Instant::now();
        let table = live.load().routes.clone();
        table
            .models()
            .iter()
            .map(|route| ModelRoute {
                name: route.model.clone(),
                aliases: route.aliases.clone(),
                strategy: route.strategy.as_str().to_string(),
                retries: route.retries,
                fallbacks: route.fallbacks.clone(),
                input_micro_usd_per_million: route.pricing.map(|p| p.input_micro_usd_per_million),
                output_micro_usd_per_million: route.pricing.map(|p| p.output_micro_usd_per_million),
                deployments: route
                    .deployments
                    .iter()
                    .map(|d| {
                        let health = &d.health;
                        DeploymentRoute {
                            provider: d.upstream.name.clone(),
                            kind: d.upstream.kind.as_str().to_string(),
                            base_url: Some(d.upstream.base_url.to_string()),
                            upstream_model: d.upstream_model.clone(),
                            weight: d.weight,
                            rpm: d.rpm,
                            tpm: d.tpm,
                            state: Some(health.state(now).as_str().to_string()),
                            in_flight: Some(health.in_flight() as u64),
                            ttfb_ms: Some(health.ttfb_micros())
                                .filter(|t| *t > 0)
                                .map(|t| t as f64 / 1000.0),
                            last_error: health.last_error(),
                        }
                    })
                    .collect(),
            })
            .collect()
    })
}

/// The quota limiter: Redis-backed when `TOLLGATE_REDIS_URL` is set, else in-process.
fn limiter(backend: &Arc<Backend>, config: &Config, metrics: &Metrics) -> Arc<Limiter> {
    match &backend.redis {
        Some(client) => {
            let store = Arc::new(RedisStore::new(
                client.clone(),
                &crate::backend::redis::prefix(),
                backend.handle(),
            ));
            if config.quota.leases {
                let book = LeaseBook::new(Some(metrics.quota_leased.clone()));
                leases::start_sync(&book, store.clone(), backend.handle());
                Limiter::with_leases(store, config.quota.clone(), backend.clone(), book)
            } else {
                Limiter::new(store, true, config.quota.clone(), backend.clone())
            }
        }
        None => Limiter::new(
            Arc::new(MemoryStore::new()),
            false,
            config.quota.clone(),
            backend.clone(),
        ),
    }
}

/// `TOLLGATE_REDIS_URL`, if set: quotas, key-change messages and spend totals shared by
/// every replica. Without it the embedded in-process store serves one process.
fn redis_url() -> Option<String> {
    std::env::var(crate::backend::redis::REDIS_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
}

/// `tollgate admin`: the admin API alone, for deployments that scale it apart from the
/// proxy. Serves until SIGINT or SIGTERM.
pub fn serve_admin(config_path: &Path) -> anyhow::Result<()> {
    crate::memory::start_purging();
    let Prepared {
        config,
        master_key,
        database_url,
        secret,
        ..
    } = prepare(config_path)?;
    let listener = bind(config.server.admin_listen, "admin")?;
    let addr = listener.local_addr()?;
    let metrics_listener = bind(config.server.metrics_listen, "metrics")?;
    let metrics_addr = metrics_listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let backend = Arc::new(Backend::start(&database_url, redis_url().as_deref())?);
    if backend.redis.is_none() {
        tracing::warn!(
            "TOLLGATE_REDIS_URL is not set: key revocations and changes reach proxies in other processes only when their cache entries expire (60 s)"
        );
    }
    let certificates = tls_certificates(&config, runtime.handle())?;
    runtime.block_on(async {
        let db = database::connect(&database_url).await?;
        let state = tollgate_admin::AdminState::new(
            db,
            secret,
            Some(master_key.expose().to_string()),
            admin_settings(
                &config,
                configured_routes(&config),
                tls_source(&certificates),
            ),
        )
        .with_change_hook(invalidation::hook(None, backend.clone()));
        let state = match login_attempts(&backend) {
            Some(store) => state.with_attempt_store(store),
            None => state,
        };
        // With Redis, the entries every gateway shares; the in-process cache lives in each
        // gateway alone.
        let redis_prefix = crate::backend::redis::prefix();
        let state = match &backend.redis {
            Some(client) => state.with_cache(ResponseCache::new(
                &config.cache,
                Some((client.clone(), redis_prefix.as_str())),
            )?),
            None => state,
        };
        // `/readyz` (the database), `/healthz` and `/metrics` for the admin process too.
        crate::metrics::shared::register_shared()?;
        let readiness = Arc::new(Readiness::new(
            backend.clone(),
            None,
            config.quota.on_store_error == OnStoreError::FailOpen,
        ));
        let metrics_listener = tokio::net::TcpListener::from_std(metrics_listener)?;
        tokio::spawn(async move {
            let served = axum::serve(metrics_listener, crate::metrics::router(readiness))
                .with_graceful_shutdown(shutdown_signal())
                .await;
            if let Err(e) = served {
                tracing::error!("metrics listener: {e}");
            }
        });
        println!(
            "{}",
            serde_json::json!({ "admin": addr, "metrics": metrics_addr })
        );
        crate::memory::start_up_over();
        tracing::info!(
            "tollgate admin API listening on http://{addr}/api, metrics on http://{metrics_addr}/metrics"
        );
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tollgate_admin::serve(listener, state, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
