//! `metering.on_client_abort: drain`: a client connection that, once its client is gone in
//! the middle of a request, goes on taking the response (and throwing it away) for up to
//! `metering.drain_timeout`. Pingora then keeps reading the upstream to its end, so the
//! request's usage is the upstream's own final count, not the part read before the client
//! left. Between requests a closed connection is just closed.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use async_trait::async_trait;
use pingora::protocols::{ALPN, Stream};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, raw_connect::ProxyDigest, tls::SslDigest,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// Shared between the connection and the code that hands it to Pingora.
#[derive(Default)]
pub struct DrainState {
    /// A request is being answered: a client that leaves now is drained for.
    busy: AtomicBool,
    /// The client left during a request.
    gone: AtomicBool,
}

impl DrainState {
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
    }

    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

pub struct Draining {
    inner: Stream,
    state: Arc<DrainState>,
    limit: Duration,
    /// Set when the client left: drained until then.
    until: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Draining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draining")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Draining {
    pub fn wrap(inner: Stream, limit: Duration) -> (Stream, Arc<DrainState>) {
        let state = Arc::new(DrainState::default());
        let stream = Draining {
            inner,
            state: state.clone(),
            limit,
            until: None,
        };
        (Box::new(stream), state)
    }

    /// The client is gone: whether to go on draining (else the failure stands).
    fn left(&mut self) -> bool {
        if self.until.is_none() {
            if !self.state.busy.load(Ordering::Acquire) {
                return false;
            }
            self.state.gone.store(true, Ordering::Release);
            tracing::debug!("the client left mid-request; draining the response");
            self.until = Some(Box::pin(tokio::time::sleep(self.limit)));
        }
        !self.expired()
    }

    fn expired(&self) -> bool {
        self.until
            .as_ref()
            .is_some_and(|until| until.deadline() <= Instant::now())
    }

    /// A read while draining: nothing until the drain ends, then the end of the stream.
    fn poll_drained(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.until {
            Some(until) => until.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
        .map(Ok)
    }
}

impl AsyncRead for Draining {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.until.is_some() {
            return this.poll_drained(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                if this.left() {
                    this.poll_drained(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            Poll::Ready(Err(e)) => {
                if this.left() {
                    this.poll_drained(cx)
                } else {
                    Poll::Ready(Err(e))
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Draining {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.until.is_some() {
            return Poll::Ready(if this.expired() {
                Err(io::ErrorKind::BrokenPipe.into())
            } else {
                Ok(data.len())
            });
        }
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Err(e)) => Poll::Ready(if this.left() { Ok(data.len()) } else { Err(e) }),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.until.is_some() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(if this.left() { Ok(()) } else { Err(e) }),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.until.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Draining {
    async fn shutdown(&mut self) {
        if self.until.is_none() {
            self.inner.shutdown().await;
        }
    }
}

impl UniqueID for Draining {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Draining {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Draining {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for Draining {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Draining {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Draining {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_gone_mid_request_is_drained_for_a_while() {
        let (near, far) = tokio::io::duplex(64);
        let (mut stream, state) = Draining::wrap(Box::new(near), Duration::from_millis(200));
        state.set_busy(true);
        drop(far);
        // Writes are taken and dropped; reads wait until the drain ends.
        assert_eq!(stream.write(b"data: 1\n\n").await.unwrap(), 9);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(state.gone());
        // Then writes fail.
        assert!(stream.write(b"x").await.is_err());
    }

    #[tokio::test]
    async fn a_client_gone_between_requests_is_just_gone() {
        let (near, far) = tokio::io::duplex(64);
        let (mut stream, state) = Draining::wrap(Box::new(near), Duration::from_secs(60));
        drop(far);
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
        assert!(!state.gone());
    }
}
