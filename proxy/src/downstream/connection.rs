//! The client's connection before Pingora parses a request on it. Pingora gives a request's
//! head only a per-read timeout (none at all between keep-alive requests), caps nothing, and
//! answers a malformed head with an empty 400 of its own. So the gateway reads each head
//! itself, then hands it to Pingora as already-read bytes:
//! - a head must arrive whole within `server.header_timeout` (from the connection's start,
//!   or from a keep-alive request's first byte), else 408; an idle keep-alive connection is
//!   closed after `server.keepalive_timeout`, and at once when the gateway shuts down;
//! - a head over `server.max_header_size`, or with more than 256 fields, gets 431;
//! - a head Pingora would refuse gets 400 naming the problem;
//! - beyond `server.max_connections` open connections, a new one gets 503 at once;
//!
//! all as OpenAI error JSON with `x-request-id`, then the connection is closed.

use std::{io::Cursor, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::{
    apps::{HttpPersistentSettings, HttpServerApp, ServerApp},
    protocols::{Stream, http::ServerSession, http::v1::server::HttpSession},
    server::ShutdownWatch,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Semaphore,
    time::{Instant, timeout, timeout_at},
};

use crate::{
    downstream::{draining::Draining, request_id::new_request_id},
    error::GatewayError,
};

/// Header fields a request may have (as many as Pingora parses).
const MAX_HEADERS: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

/// A Pingora HTTP app behind the gateway's own reading of request heads.
pub struct Front<A> {
    app: Arc<A>,
    limits: Limits,
    open: Arc<Semaphore>,
    /// `metering.on_client_abort: drain`: how long a response goes on after its client left.
    drain: Option<Duration>,
}

impl<A> Front<A> {
    pub fn new(app: A, limits: Limits, drain: Option<Duration>) -> Self {
        Front {
            app: Arc::new(app),
            open: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            drain,
        }
    }
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
enum NoHead {
    /// The client closed, sent nothing in time, or the gateway is shutting down: the
    /// connection is closed without an answer.
    Gone,
    Refused(GatewayError),
}

#[async_trait]
impl<A> ServerApp for Front<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        crate::memory::note_worker();
        let Ok(_open) = self.open.clone().try_acquire_owned() else {
            refuse(stream, &GatewayError::Overloaded).await;
            return None;
        };
        let keepalive = self.limits.keepalive_timeout.as_secs().max(1);
        let (mut stream, drain) = match self.drain {
            Some(limit) => {
                let (stream, state) = Draining::wrap(stream, limit);
                (stream, Some(state))
            }
            None => (stream, None),
        };
        let mut reused = false;
        let mut persisted = None;
        loop {
            // A new connection has the header deadline from its start; a kept-alive one
            // may idle first.
            let (head, arrived) = match read_head(&mut stream, &self.limits, reused, shutdown).await
            {
                Ok(head) => head,
                Err(NoHead::Gone) => return None,
                Err(NoHead::Refused(e)) => {
                    refuse(stream, &e).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match persisted.take() {
                Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
                None => {
                    session.set_keepalive((!*shutdown.borrow()).then_some(keepalive));
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            // Pipelining is off, so no bytes of a next request were carried over: the
            // session parses the head read here (and any body bytes read with it).
            session.set_pipelined_prefix(head);
            if let Some(drain) = &drain {
                drain.set_busy(true);
            }
            let reusable = HEAD_ARRIVED
                .scope(arrived, self.app.process_new_http(session, shutdown))
                .await;
            if let Some(drain) = &drain {
                drain.set_busy(false);
                if drain.gone() {
                    return None;
                }
            }
            let (next, settings) = reusable?.consume();
            stream = next;
            persisted = settings;
            reused = true;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

tokio::task_local! {
    /// When the first byte of the request being handled arrived.
    static HEAD_ARRIVED: std::time::Instant;
}

/// When the first byte of the current request's head arrived: the start of the gateway's
/// time on it (reading and parsing the head included). `None` outside a request.
pub fn head_arrived() -> Option<std::time::Instant> {
    HEAD_ARRIVED.try_with(|at| *at).ok()
}

/// Reads one request head (and whatever of the body came with it), and when its first
/// byte arrived.
async fn read_head(
    stream: &mut Stream,
    limits: &Limits,
    reused: bool,
    shutdown: &ShutdownWatch,
) -> Result<(BytesMut, std::time::Instant), NoHead> {
    let started = Instant::now();
    let first_byte_by = started
        + if reused {
            limits.keepalive_timeout
        } else {
            limits.header_timeout
        };
    let mut buf = BytesMut::with_capacity(2048);
    let mut stopping = shutdown.clone();
    let first = tokio::select! {
        biased;
        read = timeout_at(first_byte_by, stream.read_buf(&mut buf)) => read,
        _ = stopping.wait_for(|stop| *stop) => return Err(NoHead::Gone),
    };
    match first {
        Ok(Ok(n)) if n > 0 => {}
        // Nothing at all: not a request to answer.
        _ => return Err(NoHead::Gone),
    }
    let arrived = std::time::Instant::now();
    let deadline = if reused {
        Instant::now() + limits.header_timeout
    } else {
        first_byte_by
    };
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(&buf, scanned) {
            check(&buf[..end]).await?;
            return Ok((buf, arrived));
        }
        if buf.len() > limits.max_header_bytes {
            return Err(NoHead::Refused(GatewayError::HeaderTooLarge {
                limit: limits.max_header_bytes,
            }));
        }
        scanned = buf.len();
        buf.reserve(4096);
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err(NoHead::Gone),
            Err(_) => {
                return Err(NoHead::Refused(GatewayError::RequestTimeout {
                    part: "header",
                    limit: limits.header_timeout,
                }));
            }
        }
    }
}

/// Where the head ends (after its blank line), searching from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let window = buf.get(start..)?;
    window
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| start + i + 2)
        .into_iter()
        .chain(
            window
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| start + i + 4),
        )
        .min()
}

/// Checks a whole head as Pingora will: a plain one (the usual case) with a quick parse, an
/// unusual one by Pingora's own parser, so the gateway refuses exactly what Pingora would.
async fn check(head: &[u8]) -> Result<(), NoHead> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let plain = match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let (mut hosts, mut lengths, mut encodings, mut numeric) = (0, 0, 0, true);
            for h in request.headers.iter() {
                if h.name.eq_ignore_ascii_case("host") {
                    hosts += 1;
                } else if h.name.eq_ignore_ascii_case("content-length") {
                    lengths += 1;
                    numeric &= !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    encodings += 1;
                }
            }
            request.path.is_some_and(|p| p.starts_with('/'))
                && hosts <= 1
                && encodings == 0
                && lengths <= 1
                && numeric
        }
        Ok(httparse::Status::Partial) => false,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(NoHead::Refused(GatewayError::TooManyHeaders {
                limit: MAX_HEADERS,
            }));
        }
        Err(_) => false,
    };
    if plain {
        return Ok(());
    }
    let mut probe = HttpSession::new(Box::new(Cursor::new(head.to_vec())));
    match probe.read_request().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(NoHead::Refused(GatewayError::BadRequest(
            "the request head is incomplete".into(),
        ))),
        Err(e) => {
            let why = e
                .context
                .as_ref()
                .map_or_else(|| e.etype().as_str().to_string(), ToString::to_string);
            Err(NoHead::Refused(GatewayError::BadRequest(why)))
        }
    }
}

/// Answers an error in OpenAI's shape and closes the connection.
async fn refuse(mut stream: Stream, error: &GatewayError) {
    let body = error.body();
    let status = error.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nx-should-retry: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        new_request_id(),
        error.should_retry(),
    );
    for (name, value) in error.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tracing::debug!("refused a connection: {error}");
    // A client that does not read is not waited for long.
    let _ = timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    })
    .await;
    let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_however_it_was_read() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
        assert_eq!(head_end(head, 0), Some(27));
        for from in 0..27 {
            assert_eq!(head_end(head, from), Some(27), "from {from}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\n", 0), Some(24));
    }

    #[tokio::test]
    async fn heads_pingora_refuses_are_refused_by_name() {
        for (head, why) in [
            (
                &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
                "Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                "Transfer-Encoding",
            ),
            (b"GET /\r\n\r\n", ""),
        ] {
            let refused = check(head).await;
            let Err(NoHead::Refused(GatewayError::BadRequest(message))) = refused else {
                panic!(
                    "{:?} was not refused: {refused:?}",
                    String::from_utf8_lossy(head)
                );
            };
            assert!(message.contains(why), "{message}");
        }
        let fields: String = (0..300).map(|i| format!("x-{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        assert_eq!(
            check(many.as_bytes()).await,
            Err(NoHead::Refused(GatewayError::TooManyHeaders { limit: 256 }))
        );
        // Plain and chunked heads pass, as does a path Pingora escapes.
        for head in [
            &b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(
                check(head).await,
                Ok(()),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
