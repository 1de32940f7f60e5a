//! The Redis connection (`TOLLGATE_REDIS_URL`): bounded timeouts everywhere, so a dead
//! Redis makes calls fail fast instead of hanging requests, and reconnection in the
//! background.

use std::time::Duration;

use fred::{
    clients::{Client, SubscriberClient},
    prelude::*,
    types::config::{Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy},
};

pub const REDIS_URL_ENV: &str = "TOLLGATE_REDIS_URL";
/// Prefix of every Redis key and channel (default `tollgate`), for deployments sharing one
/// Redis.
pub const REDIS_PREFIX_ENV: &str = "TOLLGATE_REDIS_PREFIX";

pub fn prefix() -> String {
    std::env::var(REDIS_PREFIX_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "tollgate".to_string())
}
/// Longest wait for one Redis command, queueing while reconnecting included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Each fred client holds nine broadcast channels of this many slots, allocated up front
/// (about 0.9 KiB per slot across the nine). Only the subscriber needs room: for key-change
/// and purge messages arriving faster than they are read. They come one per admin action (a
/// user's or team's keys in one message), so 128 are far more than arrive between two reads;
/// a subscriber that lags anyway clears what it caches, which is safe. Command clients keep
/// fred's default.
const SUBSCRIBER_CHANNEL_CAPACITY: usize = 128;
const COMMAND_CHANNEL_CAPACITY: usize = 32;

fn builder(url: &str, channel_capacity: usize) -> anyhow::Result<Builder> {
    let mut config = Config::from_url(url)
        .map_err(|e| anyhow::anyhow!("{REDIS_URL_ENV} is not a Redis URL: {e}"))?;
    // fred's default gives up for good when the first connection fails (Redis down at
    // start-up, or a stall or cut while a second connection is made): the client would
    // never connect. The reconnect policy applies to the first connection too.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c: &mut ConnectionConfig| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p: &mut PerformanceConfig| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            p.broadcast_channel_capacity = channel_capacity;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// A client that connects in the background: start-up does not wait for Redis, and calls
/// made while it is away fail after [`COMMAND_TIMEOUT`].
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let client = builder(url, COMMAND_CHANNEL_CAPACITY)?.build()?;
    let _connection = client.connect();
    if tokio::time::timeout(Duration::from_secs(2), client.wait_for_connect())
        .await
        .is_err()
    {
        tracing::warn!(
            "Redis at {} is not reachable yet; retrying in the background",
            redact(url)
        );
    }
    Ok(client)
}

/// A second connection with the same settings, connecting in the background on `runtime`.
pub fn another_connection(client: &Client, runtime: &tokio::runtime::Handle) -> Client {
    let other = client.clone_new();
    let _runtime = runtime.enter();
    let _connection = other.connect();
    other
}

pub async fn subscriber(url: &str) -> anyhow::Result<SubscriberClient> {
    let client = builder(url, SUBSCRIBER_CHANNEL_CAPACITY)?.build_subscriber_client()?;
    let _connection = client.connect();
    let _resubscribe = client.manage_subscriptions();
    Ok(client)
}

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    crate::backend::database::redact(url)
}
