//! The admin API as a Pingora background service on the admin listener, with a database
//! pool of its own on the service's runtime.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use tollgate_admin::{AdminSettings, AdminState, CacheControl, ChangeHook, throttle::AttemptStore};
use tollgate_core::secrets::ServerSecret;

use crate::{backend::database, server::listeners::ListenerSlot};

pub struct AdminService {
    listener: ListenerSlot,
    database_url: String,
    secret: Arc<ServerSecret>,
    master_key: String,
    settings: AdminSettings,
    on_change: ChangeHook,
    /// Where login attempts are counted across replicas (Redis), if anywhere.
    attempts: Option<Arc<dyn AttemptStore>>,
    /// The response cache the API purges and reads.
    pub cache: Option<Arc<dyn CacheControl>>,
}

impl AdminService {
    pub fn new(
        listener: std::net::TcpListener,
        database_url: String,
        secret: Arc<ServerSecret>,
        master_key: String,
        settings: AdminSettings,
        on_change: ChangeHook,
        attempts: Option<Arc<dyn AttemptStore>>,
    ) -> Self {
        AdminService {
            listener: ListenerSlot::new("admin", listener),
            database_url,
            secret,
            master_key,
            settings,
            on_change,
            attempts,
            cache: None,
        }
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let db = match database::connect(&self.database_url).await {
            Ok(db) => db,
            Err(e) => {
                tracing::error!("admin API not started: {e:#}");
                return;
            }
        };
        let state = AdminState::new(
            db,
            self.secret.clone(),
            Some(self.master_key.clone()),
            self.settings.clone(),
        )
        .with_change_hook(self.on_change.clone());
        let state = match &self.attempts {
            Some(store) => state.with_attempt_store(store.clone()),
            None => state,
        };
        let state = match &self.cache {
            Some(cache) => state.with_cache(cache.clone()),
            None => state,
        };
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = tollgate_admin::serve(listener, state, stop).await {
            tracing::error!("admin API stopped: {e}");
        }
    }
}
