//! Writes responses the gateway answers itself (errors, the model list) as complete JSON
//! responses. Pingora's `respond_error` would send no content type and close the connection.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use pingora::{http::ResponseHeader, proxy::Session};

use crate::{context::overhead_header, error::GatewayError};

/// What every response the gateway writes carries: the request's id and the time the
/// gateway spent on it.
pub struct Stamp<'a> {
    pub request_id: &'a str,
    pub overhead: Duration,
    /// The request came in on Anthropic's API: errors in Anthropic's shape.
    pub anthropic: bool,
}

pub async fn json(
    session: &mut Session,
    status: StatusCode,
    body: Bytes,
    stamp: &Stamp<'_>,
    extra: &[(&'static str, &str)],
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(status, Some(5 + extra.len()))?;
    head.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    head.insert_header("x-request-id", stamp.request_id)?;
    head.insert_header("x-tollgate-overhead-ms", overhead_header(stamp.overhead))?;
    for (name, value) in extra {
        head.insert_header(*name, *value)?;
    }
    // An unread request body would be taken for the next request: close instead.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

pub async fn error(
    session: &mut Session,
    err: &GatewayError,
    stamp: &Stamp<'_>,
) -> pingora::Result<()> {
    let retry = if err.should_retry() { "true" } else { "false" };
    let headers = err.headers();
    let mut extra: Vec<(&'static str, &str)> = vec![("x-should-retry", retry)];
    extra.extend(headers.iter().map(|(name, value)| (*name, value.as_str())));
    let body = if stamp.anthropic {
        err.anthropic_body()
    } else {
        err.body()
    };
    json(session, err.status(), body, stamp, &extra).await
}

/// The status of the final response sent to the client, if any: an interim
/// `100 Continue` does not count.
pub fn final_status(session: &Session) -> Option<u16> {
    session
        .response_written()
        .filter(|r| !r.status.is_informational())
        .map(|r| r.status.as_u16())
}

/// Answers a request that failed with `err`; returns the status the client got. Once a
/// status was sent it cannot change, but a stream between events can still carry the
/// error as an event.
pub async fn failure(
    session: &mut Session,
    err: &GatewayError,
    stamp: &Stamp<'_>,
    stream_between_events: bool,
) -> u16 {
    match final_status(session) {
        None => {
            if let Err(write) = error(session, err, stamp).await {
                tracing::debug!("could not send the error response: {write}");
            }
            err.status().as_u16()
        }
        Some(status) => {
            if stream_between_events {
                let _ = session
                    .write_response_body(Some(err.sse_event(stamp.anthropic)), true)
                    .await;
            }
            status
        }
    }
}
