//! Telling every gateway process that cached key data is stale. In one process the admin
//! API evicts directly; with Redis each change is also published on a channel every proxy
//! replica subscribes to, so a revocation is enforced everywhere within milliseconds.

use std::sync::Arc;

use fred::prelude::*;
use tokio::sync::Notify;
use tollgate_admin::ChangeHook;
use tollgate_core::store::keys::KeyChange;

use crate::{auth::client_keys::ClientKeys, auth::jwt::JwtAuth, backend::Backend};

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

/// Listens for changes published by any replica's admin API and evicts them here.
pub fn subscribe(
    redis_url: &str,
    keys: Arc<ClientKeys>,
    jwt: Arc<JwtAuth>,
    reload: Arc<Notify>,
    backend: &Backend,
) {
    let url = redis_url.to_string();
    backend.handle().spawn(async move {
        let subscriber = match crate::backend::redis::subscriber(&url).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("key-change subscription not started: {e:#}");
                return;
            }
        };
        let mut messages = subscriber.message_rx();
        // Messages published while the connection was down are lost: start afresh.
        let mut reconnects = subscriber.reconnect_rx();
        let (keys_again, jwt_again) = (keys.clone(), jwt.clone());
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                keys_again.evict_all();
                jwt_again.evict_all();
            }
        });
        if let Err(e) = subscriber.subscribe(channel()).await {
            // `manage_subscriptions` subscribes again once Redis is back.
            tracing::warn!("subscribing to key changes failed (will retry on reconnect): {e}");
        }
        loop {
            let message = match messages.recv().await {
                Ok(message) => message,
                // Messages were missed: what they said is unknown, so forget everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("{missed} key-change messages missed; clearing the key cache");
                    keys.evict_all();
                    jwt.evict_all();
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let Some(text) = message.value.as_str() else {
                continue;
            };
            match serde_json::from_str::<KeyChange>(&text) {
                Ok(change) => evict(&keys, &jwt, &reload, &change),
                Err(e) => tracing::warn!("ignoring a malformed key-change message: {e}"),
            }
        }
    });
}

/// Publishes one change from a short-lived process (the CLI) to every gateway replica.
pub async fn publish_once(redis_url: &str, change: &KeyChange) -> anyhow::Result<()> {
    let client = crate::backend::redis::connect(redis_url).await?;
    let message = serde_json::to_string(change)?;
    let published: Result<(), _> = client.publish(channel(), message).await;
    let _ = client.quit().await;
    published.map_err(|e| anyhow::anyhow!("publishing the change to Redis failed: {e}"))
}
