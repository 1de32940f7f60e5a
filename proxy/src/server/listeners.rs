//! Listening sockets bound before Pingora starts, so that port 0 resolves to a real port
//! that can be reported, and handed to the background service that serves them.

use std::{
    net::{SocketAddr, TcpListener},
    sync::Mutex,
};

use anyhow::Context;

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
