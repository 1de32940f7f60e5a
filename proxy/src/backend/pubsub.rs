//! The gateway's Redis subscriptions (key changes, cache purges) on one subscriber
//! connection. Each fred subscriber client holds a connection of its own and nine
//! broadcast channels whose slots are allocated up front (about 0.1 MiB at the 128 slots a
//! subscriber gets), so the channels share a client rather than each having one.

use std::{sync::Arc, time::Duration};

use fred::prelude::{EventInterface, PubsubInterface};
use tokio::sync::broadcast::error::RecvError;

/// Wait between attempts of the first subscription.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// Handles a message's text (`None` when it is not text).
pub type OnMessage = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// Messages may have been missed (Redis was away, or they came faster than they were read):
/// forgets whatever they could have changed.
pub type OnGap = Box<dyn Fn() + Send + Sync>;

/// What the messages of one channel do in this process.
pub struct Listener {
    pub channel: String,
    pub on_message: OnMessage,
    pub on_gap: OnGap,
}

/// Subscribes to every listener's channel on one connection, on `runtime`; subscriptions
/// are made again whenever the connection comes back.
pub fn listen(url: &str, runtime: &tokio::runtime::Handle, listeners: Vec<Listener>) {
    if listeners.is_empty() {
        return;
    }
    let url = url.to_string();
    let listeners = Arc::new(listeners);
    runtime.spawn(async move {
        let subscriber = match super::redis::subscriber(&url).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("Redis subscriptions not started: {e:#}");
                return;
            }
        };
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let again = listeners.clone();
        tokio::spawn(async move {
            // Messages published while the connection was down are lost.
            while reconnects.recv().await.is_ok() {
                again.iter().for_each(|l| (l.on_gap)());
            }
        });
        // Once subscribed, `manage_subscriptions` subscribes again after every reconnect;
        // until then (Redis away at start, or too slow to answer) it knows no channels, so
        // the first subscription is retried here until it holds.
        let channels: Vec<String> = listeners.iter().map(|l| l.channel.clone()).collect();
        let mut failed = false;
        while let Err(e) = subscriber.subscribe(channels.clone()).await {
            if !failed {
                tracing::warn!("subscribing to Redis channels failed (retrying): {e}");
                failed = true;
            }
            tokio::time::sleep(SUBSCRIBE_RETRY).await;
        }
        if failed {
            tracing::info!("subscribed to Redis channels");
            // What was published before is lost.
            listeners.iter().for_each(|l| (l.on_gap)());
        }
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let channel: &str = &message.channel;
                    if let Some(listener) = listeners.iter().find(|l| l.channel == channel) {
                        (listener.on_message)(message.value.as_str().as_deref());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        "{missed} Redis messages missed; clearing what they could have changed"
                    );
                    listeners.iter().for_each(|l| (l.on_gap)());
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}
