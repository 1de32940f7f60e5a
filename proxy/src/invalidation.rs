//! Telling every gateway process that cached key data is stale. In one process the admin
//! API evicts directly; with Redis each change is also published on a channel every proxy
//! replica subscribes to, so a revocation is enforced everywhere within milliseconds.

use std::sync::Arc;

use fred::prelude::*;
use tollgate_admin::ChangeHook;
use tollgate_core::store::keys::KeyChange;

use crate::{backend::Backend, client_keys::ClientKeys, jwt_auth::JwtAuth};

fn channel() -> String {
    format!("{}:key-changes", crate::redis::prefix())
}

fn evict(keys: &ClientKeys, jwt: &JwtAuth, change: &KeyChange) {
    keys.evict(change);
    if matches!(change, KeyChange::User(_) | KeyChange::Team(_)) {
        jwt.evict_all();
    }
}

/// The admin API's hook: evict here, and publish to the other replicas.
pub fn hook(caches: Option<(Arc<ClientKeys>, Arc<JwtAuth>)>, backend: Arc<Backend>) -> ChangeHook {
    Arc::new(move |change: KeyChange| {
        if let Some((keys, jwt)) = &caches {
            evict(keys, jwt, &change);
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
pub fn subscribe(redis_url: &str, keys: Arc<ClientKeys>, jwt: Arc<JwtAuth>, backend: &Backend) {
    let url = redis_url.to_string();
    backend.handle().spawn(async move {
        let subscriber = match crate::redis::subscriber(&url).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("key-change subscription not started: {e:#}");
                return;
            }
        };
        let mut messages = subscriber.message_rx();
        if let Err(e) = subscriber.subscribe(channel()).await {
            // `manage_subscriptions` subscribes again once Redis is back.
            tracing::warn!("subscribing to key changes failed (will retry on reconnect): {e}");
        }
        while let Ok(message) = messages.recv().await {
            let Some(text) = message.value.as_str() else {
                continue;
            };
            match serde_json::from_str::<KeyChange>(&text) {
                Ok(change) => evict(&keys, &jwt, &change),
                Err(e) => tracing::warn!("ignoring a malformed key-change message: {e}"),
            }
        }
    });
}
