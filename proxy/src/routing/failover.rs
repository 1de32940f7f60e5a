//! Whether a failed attempt goes to another deployment, and what each attempt's outcome
//! tells the deployment's health. Only failures before anything reached the client are
//! retried: a connect or TLS failure, a first-byte timeout, or a status in
//! `routing.retry_on` (by default 429 and 5xx). The last attempt's answer reaches the client
//! unchanged, so SDKs map it as before.

use std::time::{Duration, Instant};

use pingora::{Error, ErrorSource, ErrorType, http::ResponseHeader};

use crate::{
    context::RequestCtx,
    routing::attempts::{LastAnswer, RetryReason},
};

/// Judges the upstream's answer before it goes to the client: a retryable status with an
/// attempt left becomes an error that Pingora retries on the next deployment.
pub fn judge_answer(ctx: &mut RequestCtx, response: &ResponseHeader) -> pingora::Result<()> {
    let status = response.status.as_u16();
    let retried = ctx.route.retries_on(status);
    let Some(deployment) = ctx.route.current() else {
        return Ok(());
    };
    if !retried {
        deployment.health.succeeded();
        // Only successes measure speed: a deployment that fails fast is not fast.
        if (200..300).contains(&status)
            && let Some(started) = ctx.route.started
        {
            deployment.health.observe_ttfb(started.elapsed());
        }
        ctx.route.pending_probe = None;
        return Ok(());
    }
    let pause = retry_after(response);
    deployment
        .health
        .failed(Instant::now(), format!("status {status}"), pause);
    ctx.route.pending_probe = None;
    if !ctx.route.may_retry(ctx.timing.started) {
        return Ok(());
    }
    ctx.route.retrying(RetryReason::Status(status));
    ctx.route.last_answer = Some(LastAnswer {
        status,
        model: ctx.route.model_name().to_string(),
        retry_after: pause,
        deployment: ctx.route.deployment_label().unwrap_or_default().to_owned(),
    });
    ctx.route.failing_over = true;
    let mut e = Error::explain(
        ErrorType::HTTPStatus(status),
        format!("upstream answered {status}: trying another deployment"),
    );
    e.set_retry(true);
    Err(e)
}

/// An attempt that failed after connecting, before or while answering. Returns whether it
/// goes again on another deployment (a pooled connection found dead is replayed instead;
/// see `Attempts::decide_replay`).
pub fn judge_failure(ctx: &mut RequestCtx, e: &mut Error, answered: bool, client_reused: bool) {
    if std::mem::take(&mut ctx.route.failing_over) {
        // Decided in `judge_answer` before the answer reached the client.
        e.set_retry(true);
        return;
    }
    // Only the upstream's failures count against it: a client that left, or the gateway's
    // own error, says nothing about the deployment.
    let upstream_fault = !answered && e.esource() == &ErrorSource::Upstream;
    // No answer within the first-byte timeout: the upstream is stuck, another may not be.
    if upstream_fault && e.etype() == &ErrorType::ReadTimedout {
        record_failure(ctx, "first-byte timeout");
        let retry = ctx.route.may_retry(ctx.timing.started);
        if retry {
            ctx.route.retrying(RetryReason::Timeout);
        }
        e.set_retry(retry);
        return;
    }
    ctx.route.decide_replay(e, answered, client_reused);
    // A pooled connection found dead and replayed is routine keep-alive churn.
    if upstream_fault && !e.retry() {
        record_failure(ctx, e.etype().as_str());
    }
}

/// A connect or TLS failure: nothing was sent, another deployment can take the request.
pub fn judge_connect_failure(ctx: &mut RequestCtx, e: &mut Error) {
    record_failure(ctx, e.etype().as_str());
    let retry = ctx.route.may_retry(ctx.timing.started);
    if retry {
        ctx.route.retrying(RetryReason::Connect);
    }
    e.set_retry(retry);
}

/// Tells the current deployment's health of a failure (this settles a probe it held).
fn record_failure(ctx: &mut RequestCtx, what: &str) {
    if let Some(deployment) = ctx.route.current() {
        deployment
            .health
            .failed(Instant::now(), what.to_string(), None);
    }
    ctx.route.pending_probe = None;
}

/// The pause the upstream asked for: `retry-after-ms`, else `retry-after` in seconds.
fn retry_after(response: &ResponseHeader) -> Option<Duration> {
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    header("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| header("retry-after").map(Duration::from_secs_f64))
        .map(|d| d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(429, None).unwrap();
        for (name, value) in headers {
            r.insert_header(*name, *value).unwrap();
        }
        r
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_ignores_nonsense() {
        assert_eq!(
            retry_after(&answer(&[("retry-after", "2"), ("retry-after-ms", "1500")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&answer(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after(&answer(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&answer(&[("retry-after", "-1")])), None);
        assert_eq!(
            retry_after(&answer(&[("retry-after", "999999")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&answer(&[])), None);
    }
}
