//! Telling every gateway process that cached key data is stale. In one process the admin
//! API evicts directly; with Redis each change is also published on a channel every proxy
//! replica subscribes to, so a revocation is enforced everywhere within milliseconds.

use std::sync::Arc;

use fred::prelude::*;
use tokio::sync::Notify;
use tollgate_admin::ChangeHook;
use tollgate_core::store::keys::KeyChange;

use crate::{
    auth::client_keys::ClientKeys,
    auth::jwt::JwtAuth,
    backend::{Backend, pubsub::Listener},
};

fn channel() -> String {
    format!("{}:key-changes", crate::backend::redis::prefix())
}

fn evict(keys: &ClientKeys, jwt: &JwtAuth, reload: &Notify, change: &KeyChange) {
    if *change == KeyChange::Credentials {
        reload.notify_one();
        return;
    }
    keys.evict(change);
    if matches!(change, KeyChange::User(_) | KeyChange::Team(_)) {
        jwt.evict_all();
    }
}

/// The admin API's hook: evict here (or reload the config for a changed credential), and
/// publish to the other replicas.
pub fn hook(
    caches: Option<(Arc<ClientKeys>, Arc<JwtAuth>, Arc<Notify>)>,
    backend: Arc<Backend>,
) -> ChangeHook {
    Arc::new(move |change: KeyChange| {
        if let Some((keys, jwt, reload)) = &caches {
            evict(keys, jwt, reload, &change);
        }
        let Some(redis) = backend.redis.clone() else {
            return;
        };
        let Ok(message) = serde_json::to_string(&change) else {
            return;
        };
        backend.handle().spawn(async move {
            if let Err(e) = redis.publish::<(), _, _>(channel(), message).await {
                tracing::error!("publishing a key change failed: {e}");
            }
        });
    })
}

/// Evicts here the changes any replica's admin API publishes.
pub fn listener(keys: Arc<ClientKeys>, jwt: Arc<JwtAuth>, reload: Arc<Notify>) -> Listener {
    let (keys_again, jwt_again) = (keys.clone(), jwt.clone());
    Listener {
        channel: channel(),
        on_message: Box::new(move |text| {
            let Some(text) = text else {
                return;
            };
            match serde_json::from_str::<KeyChange>(text) {
                Ok(change) => evict(&keys, &jwt, &reload, &change),
                Err(e) => tracing::warn!("ignoring a malformed key-change message: {e}"),
            }
        }),
        // What missed messages said is unknown, so forget every key.
        on_gap: Box::new(move || {
            keys_again.evict_all();
            jwt_again.evict_all();
        }),
    }
}

/// Publishes one change from a short-lived process (the CLI) to every gateway replica.
pub async fn publish_once(redis_url: &str, change: &KeyChange) -> anyhow::Result<()> {
    let client = crate::backend::redis::connect(redis_url).await?;
    let message = serde_json::to_string(change)?;
    let published: Result<(), _> = client.publish(channel(), message).await;
    let _ = client.quit().await;
    published.map_err(|e| anyhow::anyhow!("publishing the change to Redis failed: {e}"))
}
