//! What one finished request adds to the metrics and the access log.

use pingora::{Error, proxy::Session};

use crate::{
    context::RequestCtx,
    error::GatewayError,
    metrics::{Metrics, access_log::AccessLine, handles::status_label},
};

impl Metrics {
    /// Counts the request as in flight until [`Metrics::finish`].
    pub fn start(&self, ctx: &mut RequestCtx) {
        self.in_flight.inc();
        ctx.in_flight = true;
    }

    /// The upstream's response head arrived: the time to it since the request came in.
    pub fn upstream_answered(&self, ctx: &RequestCtx) {
        let elapsed = ctx.timing.started.elapsed().as_secs_f64();
        match ctx.route.current() {
            Some(d) => d.metrics.first_byte(self).observe(elapsed),
            None => self
                .upstream_first_byte
                .with_label_values(&[ctx.route.model_name(), ctx.route.provider_name()])
                .observe(elapsed),
        }
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
        let (model, provider) = (ctx.route.model_name(), ctx.route.provider_name());
        let elapsed = ctx.timing.started.elapsed();
        let deployment = ctx.route.current();
        match (deployment, ctx.request.endpoint) {
            (Some(d), Some(endpoint)) => {
                d.metrics.requests(self, endpoint, status).inc();
                d.metrics
                    .duration(self, endpoint)
                    .observe(elapsed.as_secs_f64());
            }
            // Refused before a deployment was chosen: rare enough to look the series up.
            _ => {
                let endpoint = ctx.request.endpoint.map_or("other", |e| e.as_str());
                self.requests
                    .with_label_values(&[endpoint, model, provider, status_label(status)])
                    .inc();
                self.duration
                    .with_label_values(&[endpoint, model])
                    .observe(elapsed.as_secs_f64());
            }
        }
        let overhead = ctx.timing.overhead.unwrap_or_else(|| ctx.timing.own_time());
        self.overhead_by_endpoint
            .get(self, ctx.request.endpoint)
            .observe(overhead.as_secs_f64());
        let usage = ctx.response.usage();
        if let Some(usage) = usage {
            match deployment {
                Some(d) => {
                    d.metrics.tokens(self, false).inc_by(usage.prompt_tokens);
                    d.metrics.tokens(self, true).inc_by(usage.completion_tokens);
                }
                None => {
                    self.tokens
                        .with_label_values(&[model, provider, "prompt"])
                        .inc_by(usage.prompt_tokens);
                    self.tokens
                        .with_label_values(&[model, provider, "completion"])
                        .inc_by(usage.completion_tokens);
                }
            }
        }
        if !self
            .access_log
            .logs(status, ctx.error.is_some() || e.is_some())
            || !tracing::enabled!(target: "tollgate::access", tracing::Level::INFO)
        {
            return;
        }
        let started = ctx.timing.started;
        let (key, user, team) = ctx
            .caller
            .as_ref()
            .map_or((None, None, None), |c| c.log_ids());
        // A cache hit: the stored answer's tokens, at the policy's share of their price.
        let hit = ctx.cache.hit.as_ref();
        let usage = hit.map_or(usage, |h| {
            Some(tollgate_core::usage::Usage {
                prompt_tokens: h.entry.prompt_tokens,
                completion_tokens: h.entry.completion_tokens,
                ..Default::default()
            })
        });
        // The upstream's own count priced; an estimate (no usage reported) is priced by the
        // metering task later and is in the usage event only.
        let cost = usage.and_then(|u| {
            let pricing = ctx.route.route.as_ref()?.pricing?;
            let full = pricing.cost(u.prompt_tokens, u.completion_tokens);
            Some(hit.map_or(full, |h| h.hit_cost.of(full)))
        });
        let line = AccessLine {
            request_id: &ctx.id,
            method: session.req_header().method.as_str(),
            path: session.req_header().uri.path(),
            status,
            key,
            user,
            team,
            model,
            provider,
            deployment: ctx.route.deployment_label(),
            stream: ctx.response.is_streaming() || ctx.request.probe.stream,
            attempts: ctx.route.count,
            latency_ms: elapsed.as_secs_f64() * 1e3,
            overhead_ms: overhead.as_secs_f64() * 1e3,
            ttfb_ms: ctx
                .timing
                .first_byte_at
                .map(|t| t.duration_since(started).as_secs_f64() * 1e3),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            cost_micro_usd: cost,
            error: ctx
                .error
                .as_ref()
                .map(|e| e.code().unwrap_or("internal"))
                .or(e.map(|e| e.etype().as_str())),
            refusal: ctx.error.as_ref().and_then(refusal_reason),
            cache: ctx.cache.outcome.map(crate::cache::Outcome::as_str),
        };
        if !line.write_json() {
            log_access(&line);
        }
    }
}

/// The access line as a `tracing` event (pretty logs).
fn log_access(l: &AccessLine<'_>) {
    tracing::info!(
        target: "tollgate::access",
        request_id = l.request_id,
        method = l.method,
        path = l.path,
        status = l.status,
        key = l.key,
        user = l.user,
        team = l.team,
        model = l.model,
        provider = l.provider,
        deployment = l.deployment,
        stream = l.stream,
        attempts = l.attempts,
        latency_ms = l.latency_ms,
        overhead_ms = l.overhead_ms,
        ttfb_ms = l.ttfb_ms,
        prompt_tokens = l.prompt_tokens,
        completion_tokens = l.completion_tokens,
        cost_micro_usd = l.cost_micro_usd,
        error = l.error,
        refusal = l.refusal.as_deref(),
        cache = l.cache,
    );
}

/// Why a quota refused the request (`rate_limit_requests`, `budget_exceeded`, …), with
/// whose limit it was.
fn refusal_reason(e: &GatewayError) -> Option<String> {
    match e {
        GatewayError::RateLimited(r) => Some(format!("{}:{}", r.owner.label(), r.dimension.code())),
        _ => None,
    }
}
