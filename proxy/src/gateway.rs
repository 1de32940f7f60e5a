//! The Pingora `ProxyHttp` implementation, in phase order. Each phase is a few lines that
//! call the module deciding it: `admission` (endpoint, auth, body, route, quota),
//! `routing` (each attempt's deployment), `upstream` (the provider's request),
//! `metering::scan` (usage in the response), `quota::headers`, `metrics` and `metering`.

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::{
    Error, ErrorSource, ErrorType,
    http::{RequestHeader, ResponseHeader},
    modules::http::HttpModules,
    protocols::Digest,
    proxy::{FailToProxy, ProxyHttp, Session},
    upstreams::peer::HttpPeer,
};

use crate::{
    admission::{self, Admission},
    auth::Auth,
    cache::{ResponseCache, hit as cache_hit},
    context::{RequestCtx, overhead_header},
    downstream::{
        endpoints::Endpoint,
        request_id::request_id,
        respond::{self, final_status},
    },
    error::GatewayError,
    live::LiveConfig,
    metering::{Meter, scan::Translation},
    metrics::Metrics,
    quota::{
        headers::replace_rate_limit_headers,
        limiter::{Claim, Limiter},
    },
    routing::{choice, failover},
    server::readiness::Readiness,
};

pub struct Gateway {
    /// Routes and model list, replaced whole by a config reload.
    pub live: LiveConfig,
    pub auth: Auth,
    pub max_body_bytes: usize,
    /// How long a client has to send a request body.
    pub body_timeout: std::time::Duration,
    pub metrics: Metrics,
    /// Shutdown state: new requests are refused once it is stopping.
    pub readiness: Arc<Readiness>,
    pub limiter: Arc<Limiter>,
    pub meter: Arc<Meter>,
    pub cache: Arc<ResponseCache>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        crate::memory::note_request();
        let mut ctx = RequestCtx::new();
        ctx.meter = Some(self.meter.clone());
        ctx
    }

    /// No downstream modules: responses pass through as the upstream encoded them, and the
    /// default (disabled) compression module would still be consulted for every chunk.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Routes, authenticates, reads the body and reserves quota; answers locally what is
    /// not proxied. `Ok(true)`: the response was written here.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        self.metrics.start(ctx);
        ctx.id = request_id(session.req_header());
        if self.readiness.draining() {
            // Clients move to another replica for their next request.
            session.set_keepalive(None);
        }
        let admitted = if self.readiness.stopping() {
            Admission::Refuse(GatewayError::ShuttingDown)
        } else {
            admission::admit(self, session, ctx).await?
        };
        match admitted {
            Admission::Proceed => return Ok(false),
            Admission::Answer(json) => {
                let stamp = ctx.stamp();
                respond::json(session, StatusCode::OK, json, &stamp, &[]).await?;
            }
            Admission::Refuse(e) => {
                self.metrics.count_refusal(&e);
                respond::error(session, &e, &ctx.stamp()).await?;
                ctx.error = Some(e);
            }
            Admission::Cached => cache_hit::respond(session, ctx).await?,
        }
        Ok(true)
    }

    /// Picks the attempt's deployment (reserving on its own limits when it is a fallback)
    /// and prepares the body it gets.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let pricing = ctx.route.route.as_ref().and_then(|r| r.pricing);
        let claim = Claim {
            request_id: &ctx.id,
            body_len: ctx.request.client_body.len(),
            probe: &ctx.request.probe,
            completes: ctx.request.endpoint != Some(Endpoint::Embeddings),
            pricing: pricing.as_ref(),
        };
        let index = choice::next(
            &self.limiter,
            &self.metrics,
            &mut ctx.route,
            &mut ctx.holds,
            &claim,
        )
        .await?;
        self.metrics.count_rerouting(ctx);
        ctx.route.begin(index);
        let deployment = ctx
            .route
            .current()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        ctx.response.translate = None;
        let native = ctx.request.endpoint.is_some_and(Endpoint::is_anthropic);
        ctx.response.anthropic_usage = native;
        ctx.request.body = match &deployment.upstream.anthropic {
            // Anthropic's own API goes to Anthropic deployments only (admission checked the
            // model's; a fallback model's may differ).
            None if native => {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "an Anthropic request routed to a deployment of another kind",
                ));
            }
            None => ctx.request.body_for(&deployment.upstream_model),
            Some(_) if native => ctx.request.body_for(&deployment.upstream_model),
            Some(options) => {
                let body = ctx
                    .request
                    .anthropic_body(deployment.id, &deployment.upstream_model, options)
                    .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()))?;
                ctx.response.translate = Some(Translation {
                    model: deployment.upstream_model.clone(),
                    include_usage: ctx.request.client_wants_usage,
                });
                body
            }
        };
        let upstream = deployment.upstream.clone();
        ctx.timing.upstream_began();
        let (stream, body_len) = (ctx.request.probe.stream, ctx.request.body.len());
        match upstream.connect_to(stream, body_len).await {
            Ok(peer) => Ok(peer),
            // The address could not be resolved: a connect failure like any other.
            Err(mut e) => {
                ctx.timing.upstream_ended();
                failover::judge_connect_failure(ctx, &mut e);
                self.metrics.count_rerouting(ctx);
                Err(e)
            }
        }
    }

    /// Swaps in the full body: Pingora replays only the retry buffer's tail (see
    /// `downstream::request_body`).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        *body = end_of_stream.then(|| ctx.request.body.clone());
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.route.started = Some(Instant::now());
        let (Some(deployment), Some(endpoint)) = (ctx.route.current(), ctx.request.endpoint) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "request not routed",
            ));
        };
        let uri = deployment.upstream_uri(endpoint, upstream_request.uri.query())?;
        deployment.upstream.rewrite_request(
            upstream_request,
            endpoint,
            uri,
            ctx.request.body.len(),
            &ctx.id,
        )
    }

    /// A retryable status with an attempt left goes to the next deployment instead.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.timing.upstream_ended();
        let judged = failover::judge_answer(ctx, response);
        self.metrics.count_rerouting(ctx);
        judged
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        self.metrics.upstream_answered(ctx);
        let overhead = ctx.timing.settle_overhead();
        response.insert_header("x-tollgate-overhead-ms", overhead_header(overhead))?;
        response.insert_header("x-tollgate-attempts", ctx.route.count.to_string())?;
        if let Some(deployment) = ctx.route.current() {
            response.insert_header("x-tollgate-deployment", deployment.label_header.clone())?;
        }
        if let Some(upstream_id) = response.headers.get("x-request-id").cloned() {
            response.insert_header("x-upstream-request-id", upstream_id)?;
        }
        response.insert_header("x-request-id", ctx.id.as_str())?;
        if let Some(admitted) = &ctx.holds.admitted {
            replace_rate_limit_headers(response, &admitted.snapshot)?;
        }
        if let Some(outcome) = ctx.cache.outcome {
            response.insert_header("x-tollgate-cache", outcome.as_str())?;
        }
        ctx.response.start(response);
        self.metrics.stream_started(ctx);
        Ok(())
    }

    /// Counts whether the attempt's upstream connection came from the pool.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        match ctx.route.current() {
            Some(d) => d.metrics.connections(&self.metrics, reused).inc(),
            None => self
                .metrics
                .upstream_connections
                .with_label_values(&[
                    ctx.route.provider_name(),
                    if reused { "true" } else { "false" },
                ])
                .inc(),
        }
        Ok(())
    }

    /// Sees each chunk once on its way to the client; nothing is held back.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if body.as_ref().is_some_and(|chunk| !chunk.is_empty()) {
            ctx.timing.first_byte_at.get_or_insert_with(Instant::now);
        }
        ctx.response.pass(body, end_of_stream);
        if let Some(capture) = &mut ctx.cache.capture {
            if let Some(chunk) = body {
                capture.push(chunk);
            }
            if end_of_stream && let Some(capture) = ctx.cache.capture.take() {
                let usage = ctx
                    .response
                    .usage()
                    .map(|u| (u.prompt_tokens, u.completion_tokens));
                capture.finish(ctx.response.status, usage);
            }
        }
        Ok(None)
    }

    /// A client that leaves mid-answer is routine (a closed tab, a cancelled call): it is
    /// metered, not logged as an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            )
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.timing.upstream_ended();
        self.metrics.count_upstream_error(ctx, &e);
        failover::judge_connect_failure(ctx, &mut e);
        self.metrics.count_rerouting(ctx);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.timing.upstream_ended();
        self.metrics.count_upstream_error(ctx, &e);
        let mut e = e.more_context(format!("Peer: {peer}"));
        let answered = final_status(session).is_some();
        failover::judge_failure(ctx, &mut e, answered, client_reused);
        self.metrics.count_rerouting(ctx);
        e
    }

    /// Shapes Pingora's own failures like every other gateway error.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let unanswered = final_status(session).is_none();
        // An upstream answered with a retryable status, and no further attempt could be made
        // after all (the deployments left were taken, at their limits or unreachable): the
        // client gets that answer's status rather than a gateway error.
        let last_answer = ctx
            .route
            .last_answer
            .take()
            .filter(|_| unanswered && e.esource() != &ErrorSource::Downstream)
            .map(|a| GatewayError::UpstreamAnswered {
                model: a.model,
                deployment: a.deployment,
                status: a.status,
                retry_after: a.retry_after,
            });
        // The deployments left after a failure were all at their limits: a 429, as when that
        // is so from the start.
        let refused = ctx
            .holds
            .fallback_refusal
            .take()
            .filter(|_| unanswered && !ctx.route.any_left());
        let err = last_answer.or(refused).or_else(|| {
            GatewayError::from_proxy_failure(e, ctx.route.model_name(), ctx.route.provider_name())
        });
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        self.metrics.count_refusal(&err);
        let between_events = ctx.response.between_events();
        let error_code = respond::failure(session, &err, &ctx.stamp(), between_events).await;
        ctx.error = Some(err);
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = final_status(session).unwrap_or(0);
        ctx.meter(status);
        self.metrics.finish(session, ctx, status, e);
    }
}
