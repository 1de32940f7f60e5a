//! Writes a cache hit: the stored answer as the client asked for it (JSON, or a stream),
//! with `x-tollgate-cache: hit`, `age`, and the usual request id, overhead and rate-limit
//! headers.

use http::StatusCode;
use pingora::{http::ResponseHeader, proxy::Session};

use crate::{
    cache::{age, answer},
    context::{RequestCtx, overhead_header},
    quota::headers::replace_rate_limit_headers,
};

pub async fn respond(session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let Some(hit) = &ctx.cache.hit else {
        return Ok(());
    };
    let stream = ctx.request.probe.stream;
    let Some(endpoint) = ctx.request.endpoint else {
        return Ok(());
    };
    let body = answer(&hit.entry, endpoint, stream, ctx.request.client_wants_usage);
    let age = age(&hit.entry);
    let overhead = ctx.timing.settle_overhead();
    let mut head = ResponseHeader::build(StatusCode::OK, Some(12))?;
    head.insert_header(
        http::header::CONTENT_TYPE,
        if stream {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        },
    )?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    head.insert_header("x-request-id", ctx.id.as_str())?;
    head.insert_header("x-tollgate-overhead-ms", overhead_header(overhead))?;
    head.insert_header("x-tollgate-cache", "hit")?;
    head.insert_header(http::header::AGE, age)?;
    if let Some(admitted) = &ctx.holds.admitted {
        replace_rate_limit_headers(&mut head, &admitted.snapshot)?;
    }
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    ctx.response.status = 200;
    ctx.response.upstream_ok = true;
    ctx.response.streamed = stream;
    ctx.response.bytes = body.len() as u64;
    session.write_response_header(Box::new(head), false).await?;
    ctx.timing
        .first_byte_at
        .get_or_insert_with(std::time::Instant::now);
    session.write_response_body(Some(body), true).await?;
    Ok(())
}
