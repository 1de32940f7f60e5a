//! Our own accept loop over hyper's HTTP/1 server. Owning each socket lets `reset` drop a
//! connection with no response at all, and `MockServer::shutdown` close every connection.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::MockOptions;
use crate::app::App;
use crate::dispatch;
use crate::request_log::RecordedRequest;
use crate::stats::MockStatsSnapshot;

/// Lets a request ask its connection task to drop the socket (`reset`).
#[derive(Clone)]
pub(crate) struct ConnAbort(Arc<Notify>);

impl ConnAbort {
    pub fn abort(&self) {
        // notify_one keeps a permit, so the abort is not lost if the task is not waiting yet.
        self.0.notify_one();
    }
}

/// A running mock on the current tokio runtime. Dropping the handle does not stop the
/// server (it lives as long as the runtime); call [`MockServer::shutdown`] for that.
pub struct MockServer {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
}

impl MockServer {
    /// Serves on an already-bound listener, spawning onto the current tokio runtime.
    /// Returns at once; fails only if there is no runtime or the listener has no address.
    pub fn spawn(listener: TcpListener, opts: MockOptions) -> io::Result<MockServer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App::new(opts));
        let (shutdown, stop) = watch::channel(false);
        // The tokenizer's pattern takes a moment to compile; do it before the first prompt.
        std::thread::spawn(crate::text::warm_tokenizer);
        runtime.spawn(accept_loop(listener, app.clone(), stop));
        Ok(MockServer {
            addr,
            app,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, what an OpenAI client takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Same data as `GET /_mock/stats`.
    pub fn stats(&self) -> MockStatsSnapshot {
        self.app.stats.snapshot()
    }

    /// Same data as `GET /_mock/requests`: the last 64 API requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.log.list()
    }

    /// Same as `POST /_mock/reset`: zeroes the counters and empties the request log.
    pub fn reset(&self) {
        self.app.stats.reset();
        self.app.log.clear();
    }

    /// The request log is on by default; benchmarks may switch it off to shave a lock and two
    /// small allocations per request.
    pub fn set_recording(&self, on: bool) {
        self.app.log.set_enabled(on);
    }

    /// Stops accepting and closes every open connection (in-flight requests included).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Serves until the task is dropped. Accept errors (e.g. out of file descriptors) are logged
/// and retried, as a server under load should, so in practice this returns only at start-up.
pub async fn serve(listener: TcpListener, opts: MockOptions) -> io::Result<()> {
    listener.local_addr()?;
    let (_keep_running, stop) = watch::channel(false);
    accept_loop(listener, Arc::new(App::new(opts)), stop).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut http = http1::Builder::new();
    // No header-read timeout: idle keep-alive connections stay open, so a client's pool never
    // races a server-side close (a spurious failure in gateway tests).
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "tollgate-mock: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            http.clone(),
            stop.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Arc<App>,
    http: http1::Builder,
    mut stop: watch::Receiver<bool>,
) {
    let abort = ConnAbort(Arc::new(Notify::new()));
    let notify = abort.0.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let abort = abort.clone();
        async move { Ok::<_, Infallible>(dispatch::handle(&app, req.map(Body::new), Some(abort)).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        done = conn => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "tollgate-mock: connection ended with an error");
            }
        }
        () = notify.notified() => tracing::debug!("tollgate-mock: connection reset by directive"),
        () = stopped(&mut stop) => {}
    }
}

/// Resolves once shutdown is requested; never if the `MockServer` handle was dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
