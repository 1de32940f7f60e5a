//! The admin listener's own accept loop over hyper, with the same connection limits as the
//! proxy listener: request headers must arrive within `server.header_timeout` (on a
//! kept-alive connection this includes the wait for the next request), bodies within
//! `server.body_timeout` (408), heads over `server.max_header_size` are refused (431), and
//! beyond `server.max_connections` open connections a new one gets 503 at once.

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tollgate_core::config::ConnectionSettings;
use tower::ServiceExt;

use crate::{TlsAcceptorSource, error::ApiError};

/// How long a request body may take, as the body extractor reads it.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests under
/// way finish (for up to 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionSettings,
    tls: Option<Arc<dyn TlsAcceptorSource>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let mut stop_accepting = stop.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!("admin listener: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop_accepting) => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let router = router.clone();
        let stop = stop.clone();
        let tls = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let Some(acceptor) = tls else {
                return connection(stream, router, peer, limits, stop).await;
            };
            // The handshake counts against the header deadline: a client that opens a
            // connection and stalls is dropped as if it sent no request.
            let handshake = async {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
                let mut stream = tokio_openssl::SslStream::new(ssl, stream).ok()?;
                std::pin::Pin::new(&mut stream).accept().await.ok()?;
                Some(stream)
            };
            if let Ok(Some(stream)) = tokio::time::timeout(limits.header_timeout, handshake).await {
                connection(stream, router, peer, limits, stop).await;
            }
        });
    }
    // Every connection's permit back: the requests under way have ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), open.acquire_many(all)).await;
    Ok(())
}

/// Serves one connection's requests until it closes, or the server stops (the request
/// under way is finished first).
async fn connection<S>(
    stream: S,
    router: Router,
    peer: std::net::SocketAddr,
    limits: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut()
            .insert(BodyTimeout(limits.body_timeout));
        let router = router.clone();
        async move { router.oneshot(req.map(Body::new)).await }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once the server stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "error": {
            "message": "The admin API has as many open connections as it accepts (server.max_connections); try again shortly.",
            "type": "api_error",
            "code": "server_overloaded",
            "param": null,
        }
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nretry-after: 1\r\nx-should-retry: true\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        crate::guard::new_request_id(),
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

impl From<BodyTimeout> for ApiError {
    fn from(BodyTimeout(limit): BodyTimeout) -> Self {
        ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s (server.body_timeout)",
            limit.as_secs_f64()
        ))
    }
}
