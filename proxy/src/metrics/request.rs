//! What one finished request adds to the metrics and the access log.

use pingora::{Error, proxy::Session};

use crate::{context::RequestCtx, error::GatewayError, metrics::Metrics};

impl Metrics {
    /// Counts the request as in flight until [`Metrics::finish`].
    pub fn start(&self, ctx: &mut RequestCtx) {
        self.in_flight.inc();
        ctx.in_flight = true;
    }

    /// The upstream's response head arrived: the time to it since the request came in.
    pub fn upstream_answered(&self, ctx: &RequestCtx) {
        self.upstream_first_byte
            .with_label_values(&[ctx.route.model_name(), ctx.route.provider_name()])
            .observe(ctx.timing.started.elapsed().as_secs_f64());
    }

    /// Counts a quota refusal the client got; a full deployment passed over for another is
    /// not one.
    pub fn count_refusal(&self, e: &GatewayError) {
        if let GatewayError::RateLimited(r) = e {
            self.quota_rejections
                .with_label_values(&[r.dimension.code()])
                .inc();
        }
    }

    /// Counts a retry or a move to a fallback model the routing just decided.
    pub fn count_rerouting(&self, ctx: &mut RequestCtx) {
        if let Some(reason) = ctx.route.retried_for.take() {
            self.retries
                .with_label_values(&[ctx.route.model_name(), reason.label().as_str()])
                .inc();
        }
        if let Some((from, to)) = ctx.route.fell_back.take() {
            self.fallbacks.with_label_values(&[&from, &to]).inc();
        }
    }

    /// Counts an upstream failure of the current attempt.
    pub fn count_upstream_error(&self, ctx: &RequestCtx, e: &Error) {
        self.upstream_errors
            .with_label_values(&[ctx.route.provider_name(), e.etype().as_str()])
            .inc();
    }

    /// A streamed response began: counted until the request finishes.
    pub fn stream_started(&self, ctx: &mut RequestCtx) {
        if ctx.response.is_streaming() && !ctx.stream_in_flight {
            self.streams_in_flight.inc();
            ctx.stream_in_flight = true;
        }
    }

    /// Records a finished request (`status` 0: no response was sent) and writes its
    /// access-log line.
    pub fn finish(&self, session: &Session, ctx: &RequestCtx, status: u16, e: Option<&Error>) {
        if ctx.in_flight {
            self.in_flight.dec();
        }
        if ctx.stream_in_flight {
            self.streams_in_flight.dec();
        }
        let endpoint = ctx.request.endpoint.map_or("other", |e| e.as_str());
        let (model, provider) = (ctx.route.model_name(), ctx.route.provider_name());
        let elapsed = ctx.timing.started.elapsed();
        self.requests
            .with_label_values(&[endpoint, model, provider, status_label(status)])
            .inc();
        self.duration
            .with_label_values(&[endpoint, model])
            .observe(elapsed.as_secs_f64());
        let overhead = ctx.timing.overhead.unwrap_or_else(|| ctx.timing.own_time());
        self.overhead
            .with_label_values(&[endpoint])
            .observe(overhead.as_secs_f64());
        let usage = ctx.response.usage();
        if let Some(usage) = usage {
            self.tokens
                .with_label_values(&[model, provider, "prompt"])
                .inc_by(usage.prompt_tokens);
            self.tokens
                .with_label_values(&[model, provider, "completion"])
                .inc_by(usage.completion_tokens);
        }
        let stream = ctx.response.is_streaming() || ctx.request.probe.stream;
        let started = ctx.timing.started;
        let (key, user, team) = ctx
            .caller
            .as_ref()
            .map_or((None, None, None), |c| c.log_ids());
        // The upstream's own count priced; an estimate (no usage reported) is priced by the
        // metering task later and is in the usage event only.
        let cost = usage.and_then(|u| {
            let pricing = ctx.route.route.as_ref()?.pricing?;
            Some(pricing.cost(u.prompt_tokens, u.completion_tokens))
        });
        tracing::info!(
            target: "tollgate::access",
            request_id = %ctx.id,
            method = %session.req_header().method,
            path = session.req_header().uri.path(),
            status,
            key,
            user,
            team,
            model,
            provider,
            deployment = ctx.route.deployment_label(),
            stream,
            attempts = ctx.route.count,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            overhead_ms = overhead.as_secs_f64() * 1e3,
            ttfb_ms = ctx.timing.first_byte_at.map(|t| t.duration_since(started).as_secs_f64() * 1e3),
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            cost_micro_usd = cost,
            error = ctx.error.as_ref().map(|e| e.code().unwrap_or("internal")).or(e.map(|e| e.etype().as_str())),
            refusal = ctx.error.as_ref().and_then(refusal_reason),
        );
    }
}

/// Why a quota refused the request (`rate_limit_requests`, `budget_exceeded`, …), with
/// whose limit it was.
fn refusal_reason(e: &GatewayError) -> Option<String> {
    match e {
        GatewayError::RateLimited(r) => Some(format!("{}:{}", r.owner.label(), r.dimension.code())),
        _ => None,
    }
}

fn status_label(status: u16) -> &'static str {
    // Static labels avoid formatting a string per request.
    match status {
        0 => "0",
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
