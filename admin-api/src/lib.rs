//! The Tollgate admin API: users, teams, API keys, provider credentials, usage and the audit
//! log, as JSON under `/api`, with its OpenAPI document at `/api/openapi.json` and a docs
//! page at `/api/docs`. `tollgate serve` mounts it on the admin listener; `tollgate admin`
//! runs it alone.

pub mod auth;
mod cors;
pub mod error;
mod extract;
mod guard;
pub mod hashing;
mod openapi;
mod page;
mod routes;
mod serve;
pub mod throttle;
mod ui;

use std::{sync::Arc, time::Duration};

use axum::{Router, response::IntoResponse};
use sea_orm::DatabaseConnection;
use tollgate_core::{config::ConnectionSettings, secrets::ServerSecret, store::keys::KeyChange};

use hashing::Hasher;
use throttle::{AttemptStore, LoginThrottle};

pub use openapi::openapi;
pub use routes::routing::{DeploymentRoute, ModelRoute, RouteSource};

/// Settings of the admin API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// How long a session token from `POST /api/auth/login` is valid.
    pub token_ttl: Duration,
    /// How long a rotated key's old secret keeps working unless the request says otherwise.
    pub rotation_grace: Duration,
    /// Failed logins allowed per client address and per account each minute.
    pub login_attempts: u32,
    /// Deadlines and caps on the listener's connections.
    pub connections: ConnectionSettings,
    /// The models the gateway serves, with their live state (shown at `/api/routes`).
    pub routes: RouteSource,
    /// Browser origins allowed to call the API (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// TLS on the listener (`server.tls`): the acceptor of the current certificate.
    pub tls: Option<Arc<dyn TlsAcceptorSource>>,
}

/// Where the listener gets its TLS acceptor, asked once per connection so that a renewed
/// certificate is used from the next connection on.
pub trait TlsAcceptorSource: Send + Sync + std::fmt::Debug {
    fn acceptor(&self) -> Arc<openssl::ssl::SslAcceptor>;
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            token_ttl: Duration::from_secs(3600),
            rotation_grace: Duration::from_secs(24 * 3600),
            login_attempts: 10,
            connections: ConnectionSettings::default(),
            routes: RouteSource::default(),
            cors_origins: Vec::new(),
            tls: None,
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    secret: Arc<ServerSecret>,
    master_key: Option<String>,
    settings: AdminSettings,
    on_change: ChangeHook,
    hasher: Arc<Hasher>,
    throttle: Arc<LoginThrottle>,
    cache: Option<Arc<dyn CacheControl>>,
}

/// Which cache entries a purge removes (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePurge {
    pub model: Option<String>,
    /// The internal id of the key whose requests stored them.
    pub key_id: Option<i64>,
}

/// What the response cache holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheHolding {
    /// `memory` or `redis`.
    pub store: &'static str,
    pub entries: u64,
    pub bytes: u64,
    /// Entries and bytes by model.
    pub by_model: std::collections::BTreeMap<String, (u64, u64)>,
}

/// The gateway's response cache, as the admin API purges and reads it.
pub trait CacheControl: Send + Sync {
    fn purge(
        &self,
        which: CachePurge,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
    fn holding(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<CacheHolding, String>> + Send + '_>>;
}

/// Told of every committed change that gateways caching keys must hear of (revocation,
/// rotation, new limits, a disabled owner).
pub type ChangeHook = Arc<dyn Fn(KeyChange) + Send + Sync>;

impl AdminState {
    pub fn new(
        db: DatabaseConnection,
        secret: Arc<ServerSecret>,
        master_key: Option<String>,
        settings: AdminSettings,
    ) -> Self {
        AdminState {
            inner: Arc::new(Inner {
                db,
                secret,
                master_key,
                throttle: Arc::new(LoginThrottle::new(settings.login_attempts, None)),
                settings,
                on_change: Arc::new(|_| {}),
                hasher: Hasher::start(),
                cache: None,
            }),
        }
    }

    /// The same state with some parts changed (before it is shared).
    fn rebuilt(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            db: shared.db.clone(),
            secret: shared.secret.clone(),
            master_key: shared.master_key.clone(),
            settings: shared.settings.clone(),
            on_change: shared.on_change.clone(),
            hasher: shared.hasher.clone(),
            throttle: shared.throttle.clone(),
            cache: shared.cache.clone(),
        });
        change(&mut inner);
        AdminState {
            inner: Arc::new(inner),
        }
    }

    /// The same state, telling `hook` of key changes.
    pub fn with_change_hook(self, hook: ChangeHook) -> Self {
        self.rebuilt(|inner| inner.on_change = hook)
    }

    /// The same state, counting login attempts in `store` (shared by every replica).
    pub fn with_attempt_store(self, store: Arc<dyn AttemptStore>) -> Self {
        self.rebuilt(|inner| {
            inner.throttle = Arc::new(LoginThrottle::new(
                inner.settings.login_attempts,
                Some(store),
            ));
        })
    }

    /// The same state, purging and reading `cache`.
    pub fn with_cache(self, cache: Arc<dyn CacheControl>) -> Self {
        self.rebuilt(|inner| inner.cache = Some(cache))
    }

    pub(crate) fn cache(&self) -> Option<&Arc<dyn CacheControl>> {
        self.inner.cache.as_ref()
    }

    /// Tells gateways of a committed change.
    pub(crate) fn changed(&self, change: KeyChange) {
        (self.inner.on_change)(change);
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn secret(&self) -> &ServerSecret {
        &self.inner.secret
    }

    pub fn settings(&self) -> &AdminSettings {
        &self.inner.settings
    }

    pub(crate) fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub(crate) fn throttle(&self) -> &LoginThrottle {
        &self.inner.throttle
    }
}

/// The admin API's router, with the OpenAPI document and the docs page.
pub fn router(state: AdminState) -> Router {
    let origins = cors::CorsOrigins::new(state.settings().cors_origins.clone());
    let (api, spec) = routes::router().split_for_parts();
    let docs = utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .url("/api/openapi.json", openapi::finish(spec));
    api.with_state(state)
        .merge(docs)
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                // Outside the API, the web UI answers (GET and HEAD only).
                let api = uri.path() == "/api" || uri.path().starts_with("/api/");
                if !api && (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
                {
                    return ui::serve(uri, &headers).await;
                }
                error::ApiError::NotFound(format!("route {method} {}", uri.path())).into_response()
            },
        )
        .layer(axum::middleware::from_fn(guard::guard))
        .layer(axum::middleware::from_fn(move |request, next| {
            cors::cors(origins.clone(), request, next)
        }))
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings().connections;
    let tls = state.settings().tls.clone();
    serve::serve(listener, router(state), limits, tls, shutdown).await
}
