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

/// The proxy's address, held from before Pingora starts until the process exits.
///
/// Pingora binds the proxy listener itself, from an address, and only once its service
/// starts. For port 0 a free port is picked here first so that it can be reported; the
/// socket that picked it stays bound (without listening, with `SO_REUSEADDR` like Pingora's
/// own) so that no other process is handed the same port by the kernel in between, while
/// Pingora's bind to it still succeeds. Dropping the probe instead left a window in which a
/// process starting alongside could take the port: this replica then reported, and its
/// readiness check reached, the other process's proxy.
pub struct ReservedPort {
    pub addr: SocketAddr,
    _held: tokio::net::TcpSocket,
}

pub fn reserve(addr: SocketAddr) -> anyhow::Result<ReservedPort> {
    let context = || format!("binding the proxy listener on {addr}");
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(context)?;
    socket.set_reuseaddr(true).with_context(context)?;
    socket.bind(addr).with_context(context)?;
    Ok(ReservedPort {
        addr: socket.local_addr()?,
        _held: socket,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// Between `reserve` and Pingora's bind, the port is nobody else's: a socket that does
    /// not share addresses cannot bind it, Pingora's (which does) can, and listens.
    #[tokio::test]
    async fn a_reserved_port_stays_reserved_until_pingora_binds_it() {
        let reserved = reserve(loopback()).unwrap();
        assert_ne!(reserved.addr.port(), 0);

        let rival = tokio::net::TcpSocket::new_v4().unwrap();
        let err = rival.bind(reserved.addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        let pingora = tokio::net::TcpSocket::new_v4().unwrap();
        pingora.set_reuseaddr(true).unwrap();
        pingora.bind(reserved.addr).unwrap();
        let listener = pingora.listen(16).unwrap();
        let (client, accepted) = tokio::join!(
            tokio::net::TcpStream::connect(reserved.addr),
            listener.accept()
        );
        client.unwrap();
        accepted.unwrap();
    }

    /// An address another process listens on is refused at once, naming it.
    #[test]
    fn a_port_in_use_is_refused_with_its_address() {
        let taken = TcpListener::bind(loopback()).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = reserve(addr).err().unwrap();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
