//! Listening sockets bound before Pingora starts, so that port 0 resolves to a real port
//! that can be reported, and handed to the background service that serves them.

use std::{
    net::{SocketAddr, TcpListener},
    sync::Mutex,
};

use anyhow::Context;
use tollgate_core::config::ConnectionSettings;

use crate::downstream::connection::Limits;

/// Binds a non-blocking listener, ready to be moved onto a tokio runtime.
pub fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("binding the {what} listener on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Pingora binds the proxy listener itself, from an address. For port 0 a free port is
/// picked here first so that it can be reported.
pub fn reserve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe =
        TcpListener::bind(addr).with_context(|| format!("binding the proxy listener on {addr}"))?;
    Ok(probe.local_addr()?)
}

/// A bound listener waiting for the service that will serve it (services start later, each
/// on its own runtime).
pub struct ListenerSlot {
    what: &'static str,
    listener: Mutex<Option<TcpListener>>,
}

impl ListenerSlot {
    pub fn new(what: &'static str, listener: TcpListener) -> Self {
        ListenerSlot {
            what,
            listener: Mutex::new(Some(listener)),
        }
    }

    /// The listener on the current tokio runtime; `None` (logged) if taken or unusable.
    pub fn take(&self) -> Option<tokio::net::TcpListener> {
        let listener = self.listener.lock().ok()?.take()?;
        tokio::net::TcpListener::from_std(listener)
            .inspect_err(|e| tracing::error!("{} listener: {e}", self.what))
            .ok()
    }
}

/// A listener's connection limits: the configured ones, with the cap on open connections
/// kept under the file descriptors the process may open (first raised to the hard limit),
/// so that beyond the cap a connection is answered 503 rather than failing to be accepted.
/// A third each for the two listeners and the upstream connections of proxied requests.
pub fn connection_limits(settings: &ConnectionSettings) -> Limits {
    let descriptors = raise_descriptor_limit();
    let cap = usize::try_from(descriptors / 3)
        .unwrap_or(usize::MAX)
        .max(16);
    if cap < settings.max_connections {
        tracing::info!(
            "server.max_connections is {}, but the process may open only {descriptors} files: \
             accepting at most {cap} connections per listener",
            settings.max_connections
        );
    }
    Limits {
        header_timeout: settings.header_timeout,
        keepalive_timeout: settings.keepalive_timeout,
        max_header_bytes: settings.max_header_bytes,
        max_connections: settings.max_connections.min(cap),
    }
}

/// Raises the soft limit on open files to the hard one; answers the limit in effect.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum || (limit.maximum.is_none() && limit.current.is_some()) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}
