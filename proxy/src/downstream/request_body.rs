//! Reads a request body in `request_filter` with a size cap. Pingora does not re-send a body
//! read this early, so the retry buffer is armed for the last ≤ 64 KiB: Pingora then replays
//! that buffer through `request_body_filter`, where the gateway substitutes the whole body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::error::GatewayError;

/// Pingora's retry buffer holds at most this much (`BODY_BUF_LIMIT`).
const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// The whole body, or the error to answer with: too large, not all there within `deadline`
/// (408), or malformed (a bad chunk: 400). A client that is gone propagates as `Err`.
pub async fn read_capped(
    session: &mut Session,
    limit: usize,
    deadline: Duration,
) -> pingora::Result<Result<Bytes, GatewayError>> {
    let late = GatewayError::RequestTimeout {
        part: "body",
        limit: deadline,
    };
    // Each read also waits no longer than the whole body may take.
    session.set_read_timeout(Some(deadline));
    match tokio::time::timeout(deadline, read(session, limit)).await {
        Ok(Err(e)) => match e.etype().as_str() {
            "ReadTimedout" => Ok(Err(late)),
            // Pingora's names for a malformed chunked body.
            "InvalidChunk" | "InvalidTrailerEnd" => Ok(Err(GatewayError::BadRequest(format!(
                "the chunked body is malformed ({})",
                e.context
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
            )))),
            _ => Err(e),
        },
        Ok(read) => read,
        Err(_) => Ok(Err(late)),
    }
}

async fn read(session: &mut Session, limit: usize) -> pingora::Result<Result<Bytes, GatewayError>> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(size) = declared.filter(|&size| size > limit) {
        return Ok(Err(GatewayError::BodyTooLarge { size, limit }));
    }
    if session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        // curl waits a second for this before it sends a body over 1 KiB.
        session.write_continue_response().await?;
    }
    // Reads return at most 64 KiB, so arming once ≤ 64 KiB remains means the buffer ends up
    // holding exactly the tail of the body, never truncated.
    let mut armed = false;
    let mut arm = |session: &mut Session, remaining: Option<usize>| {
        if !armed && remaining.is_none_or(|r| r <= RETRY_BUFFER_LIMIT) {
            session.enable_retry_buffering();
            armed = true;
        }
    };
    // Grow as bytes arrive: a declared length alone must not reserve up to the limit.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(RETRY_BUFFER_LIMIT));
    loop {
        arm(session, declared.map(|d| d.saturating_sub(body.len())));
        let Some(chunk) = session.read_request_body().await? else {
            break;
        };
        if body.len() + chunk.len() > limit {
            return Ok(Err(GatewayError::BodyTooLarge {
                size: body.len() + chunk.len(),
                limit,
            }));
        }
        body.extend_from_slice(&chunk);
    }
    if !body.is_empty() && session.get_retry_buffer().is_none() {
        // Only a chunked upload over 64 KiB gets here: its end could not be foreseen.
        return Ok(Err(GatewayError::LengthRequired));
    }
    Ok(Ok(body.freeze()))
}
