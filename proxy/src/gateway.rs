//! The Pingora `ProxyHttp` implementation, in phase order. Each phase stays thin and calls
//! the module that does the work: endpoints, auth, request_body, routing, upstream, metrics.

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::{
    Error, ErrorType,
    http::{RequestHeader, ResponseHeader},
    modules::http::HttpModules,
    proxy::{FailToProxy, ProxyHttp, Session},
    upstreams::peer::HttpPeer,
};
use tollgate_core::{
    body::{self, RequestProbe},
    config::SubjectKind,
};

use crate::{
    auth::{Auth, Principal},
    context::{RequestCtx, ResponseScan},
    endpoints::{self, Endpoint, Target},
    error::GatewayError,
    limiter::{self, Limiter, Settlement, rate_limit_headers},
    metering::{self, Finished, Meter},
    metrics::Metrics,
    models::ModelCatalog,
    quota::{Limits, Owner, Scoped},
    request_body, respond,
    routing::{Route, RouteDeployment, RouteTable, Tried},
};

const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// How often one request may be replayed after a dead pooled connection.
const MAX_REPLAYS: u32 = 2;
/// How soon after an attempt starts a dead connection still counts as stale rather than lost.
const REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Gateway {
    pub routes: RouteTable,
    pub auth: Auth,
    pub models: ModelCatalog,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
    pub limiter: Arc<Limiter>,
    pub meter: Arc<Meter>,
}

impl Gateway {
    /// Reserves the request's quotas: the client's scopes and, where the chosen deployment
    /// has limits of its own, the deployment's. A deployment at its limit is passed over for
    /// the next one; the client is refused only when every deployment is.
    async fn reserve(
        &self,
        ctx: &mut RequestCtx,
        route: &Arc<Route>,
        scopes: Vec<Scoped>,
        body: &Bytes,
        probe: &RequestProbe,
        endpoint: Endpoint,
    ) -> Result<(), GatewayError> {
        let mut passed_over = Tried::default();
        loop {
            let mut claim = scopes.clone();
            let pick = route.pick(passed_over);
            let deployment_scope = pick.and_then(|i| deployment_scope(&route.deployments[i]));
            let limited = deployment_scope.is_some();
            claim.extend(deployment_scope);
            let Some(reservation) = self.limiter.reservation(
                claim,
                &ctx.request_id,
                body.len(),
                probe,
                endpoint != Endpoint::Embeddings,
                route.pricing.as_ref(),
            ) else {
                ctx.preselected = pick;
                return Ok(());
            };
            match self.limiter.admit(reservation, &self.metrics).await {
                Ok(admitted) => {
                    ctx.admitted = Some(admitted);
                    ctx.preselected = pick;
                    ctx.reserved_deployment = pick.filter(|_| limited);
                    return Ok(());
                }
                Err(GatewayError::RateLimited(r))
                    if r.owner == limiter::DEPLOYMENT_OWNER
                        && let Some(i) = pick
                        && route.pick(passed_over.with(i)).is_some() =>
                {
                    passed_over.mark(i);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Counts a quota refusal the client got; a full deployment passed over for another is
    /// not one.
    fn count_refusal(&self, e: &GatewayError) {
        if let GatewayError::RateLimited(r) = e {
            self.metrics
                .quota_rejections
                .with_label_values(&[r.dimension.code()])
                .inc();
        }
    }

    /// Picks the deployment for an attempt after the first. One with limits of its own is
    /// reserved on first (a second Redis call, on the fallback path only); one at its limit
    /// is passed over like an unreachable one.
    async fn fallback_deployment(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
    ) -> pingora::Result<usize> {
        loop {
            let Some(index) = route.pick(ctx.tried) else {
                return Err(Error::explain(
                    ErrorType::ConnectError,
                    "every deployment of the model failed or is at its limit",
                ));
            };
            let held = ctx.reserved_deployment == Some(index)
                || ctx.fallback_holds.iter().any(|(i, _)| *i == index);
            let Some(scope) = deployment_scope(&route.deployments[index]).filter(|_| !held) else {
                return Ok(index);
            };
            let Some(reservation) = self.limiter.reservation(
                vec![scope],
                &ctx.request_id,
                ctx.client_body.len(),
                &ctx.probe,
                ctx.endpoint != Some(Endpoint::Embeddings),
                route.pricing.as_ref(),
            ) else {
                return Ok(index);
            };
            match self.limiter.admit(reservation, &self.metrics).await {
                Ok(admitted) => {
                    ctx.fallback_holds.push((index, admitted));
                    return Ok(index);
                }
                // Answered as the 429 it is if no deployment is left (see fail_to_proxy).
                Err(e @ GatewayError::RateLimited(_)) => {
                    ctx.tried.mark(index);
                    ctx.fallback_refusal = Some(e);
                }
                // The client is admitted already; a store failure here does not undo that.
                Err(e) => {
                    tracing::warn!("reserving on a fallback deployment failed: {e}");
                    return Ok(index);
                }
            }
        }
    }

    /// Checks and reads the request; `Ok(None)` means proxy it, `Ok(Some(..))` means it was
    /// answered here.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Result<Option<()>, GatewayError>> {
        let req = session.req_header();
        let target = match endpoints::classify(&req.method, req.uri.path()) {
            Ok(target) => target,
            Err(e) => return Ok(Err(e)),
        };
        match self.auth.authenticate(&req.headers).await {
            Ok(principal) => ctx.principal = Some(principal),
            Err(e) => return Ok(Err(e)),
        }
        let endpoint = match target {
            Target::ListModels => {
                respond::json(
                    session,
                    StatusCode::OK,
                    self.models.list(),
                    &ctx.request_id,
                    &[],
                )
                .await?;
                return Ok(Ok(Some(())));
            }
            Target::GetModel(id) => {
                let Some(model) = self.models.get(&id) else {
                    return Ok(Err(GatewayError::UnknownModel(id)));
                };
                respond::json(session, StatusCode::OK, model, &ctx.request_id, &[]).await?;
                return Ok(Ok(Some(())));
            }
            Target::Proxy(endpoint) => endpoint,
        };
        ctx.endpoint = Some(endpoint);

        let body = match request_body::read_capped(session, self.max_body_bytes).await? {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let probe = match body::probe(&body) {
            Ok(probe) => probe,
            Err(e) => return Ok(Err(GatewayError::InvalidBody(e.to_string()))),
        };
        let Some(model) = probe.model.as_deref() else {
            return Ok(Err(GatewayError::MissingModel));
        };
        let Some(route) = self.routes.get(model) else {
            return Ok(Err(GatewayError::UnknownModel(model.to_string())));
        };
        let scopes = match &ctx.principal {
            Some(Principal::Key(key)) => {
                if !key.allows(model, &route.model) {
                    return Ok(Err(GatewayError::ModelNotAllowed(model.to_string())));
                }
                limiter::scopes(key, chrono::Utc::now())
            }
            Some(Principal::Jwt(subject)) => limiter::subject_scopes(subject, chrono::Utc::now()),
            Some(Principal::Master) | None => Vec::new(),
        };
        match self
            .reserve(ctx, route, scopes, &body, &probe, endpoint)
            .await
        {
            Ok(()) => {}
            Err(e) => return Ok(Err(e)),
        }
        ctx.route = Some(route.clone());
        // Streams must report their usage to be metered exactly: ask for it, and take the
        // extra event out again for clients that did not (see response_body_filter).
        let (body, probe) = if probe.stream
            && probe.include_usage != Some(true)
            && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
        {
            match body::with_include_usage(&body, &probe).and_then(|b| Ok((body::probe(&b)?, b))) {
                Ok((probe, body)) => {
                    ctx.strip_usage = true;
                    (body, probe)
                }
                Err(e) => return Ok(Err(GatewayError::InvalidBody(e.to_string()))),
            }
        } else {
            (body, probe)
        };
        ctx.client_body = body;
        ctx.probe = probe;
        Ok(Ok(None))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// No downstream modules: responses pass through as the upstream encoded them, and the
    /// default (disabled) compression module would still be consulted for every chunk.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Routes, authenticates and reads the body; answers locally what is not proxied.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        self.metrics.in_flight.inc();
        ctx.in_flight = true;
        ctx.request_id = request_id(session.req_header());
        match self.admit(session, ctx).await? {
            Ok(None) => Ok(false),
            Ok(Some(())) => Ok(true),
            Err(e) => {
                self.count_refusal(&e);
                respond::error(session, &e, &ctx.request_id).await?;
                ctx.error = Some(e);
                Ok(true)
            }
        }
    }

    /// Picks the next untried deployment and prepares the body it gets.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        // The first attempt goes where the quota check reserved capacity.
        let index = match ctx.preselected.take().filter(|i| !ctx.tried.contains(*i)) {
            Some(index) => index,
            None => self.fallback_deployment(ctx, &route).await?,
        };
        ctx.tried.mark(index);
        ctx.deployment = Some(index);
        ctx.attempts += 1;
        let deployment = &route.deployments[index];

        ctx.body = match (&ctx.probe.model, &ctx.probe.model_span) {
            (Some(asked), Some(span)) if *asked != deployment.upstream_model => {
                body::replace_model(&ctx.client_body, span, &deployment.upstream_model)
            }
            _ => ctx.client_body.clone(),
        };

        deployment
            .upstream
            .peer(ctx.probe.stream)
            .await
            .map_err(|e| {
                let mut err = Error::because(
                    ErrorType::ConnectNoRoute,
                    format!(
                        "resolving the address of provider {}",
                        deployment.upstream.name
                    ),
                    e,
                );
                err.set_retry(route.pick(ctx.tried).is_some());
                err
            })
    }

    /// Swaps in the full body: Pingora replays only the retry buffer's tail (see request_body).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        *body = end_of_stream.then(|| ctx.body.clone());
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(route), Some(index), Some(endpoint)) = (&ctx.route, ctx.deployment, ctx.endpoint)
        else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "request not routed",
            ));
        };
        ctx.attempt_started = Some(Instant::now());
        let deployment = &route.deployments[index];
        deployment.upstream.rewrite_request(
            upstream_request,
            endpoint,
            &deployment.upstream_model,
            ctx.body.len(),
            &ctx.request_id,
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let now = Instant::now();
        ctx.upstream_headers_at = Some(now);
        ctx.upstream_ok = response.status.is_success();
        self.metrics
            .upstream_first_byte
            .with_label_values(&[ctx.model_name(), ctx.provider_name()])
            .observe(now.duration_since(ctx.started).as_secs_f64());
        if let Some(upstream_id) = response.headers.get("x-request-id").cloned() {
            response.insert_header("x-upstream-request-id", upstream_id)?;
        }
        response.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(admitted) = &ctx.admitted {
            // The upstream's figures describe the provider account; the client's limits are
            // the key's.
            for name in RATE_LIMIT_HEADERS {
                response.remove_header(name);
            }
            for (name, value) in rate_limit_headers(&admitted.snapshot) {
                response.insert_header(name, value)?;
            }
        }

        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        ctx.response = if content_type.starts_with(b"text/event-stream") {
            if ctx.strip_usage {
                // Events are removed: the upstream's length, if any, no longer holds.
                response.remove_header(&http::header::CONTENT_LENGTH);
            }
            ctx.streamed = true;
            ResponseScan::Stream(Box::default())
        } else if response.status.is_success() && content_type.starts_with(b"application/json") {
            ResponseScan::Json(Box::default())
        } else {
            ResponseScan::None
        };
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
        if let Some(chunk) = body.as_ref().filter(|c| !c.is_empty()) {
            ctx.first_byte_at.get_or_insert_with(Instant::now);
            ctx.response_bytes += chunk.len() as u64;
            match &mut ctx.response {
                ResponseScan::Stream(scanner) if ctx.strip_usage => {
                    *body = Some(Bytes::from(scanner.filter_usage_chunk(chunk)));
                }
                ResponseScan::Stream(scanner) => scanner.feed(chunk),
                ResponseScan::Json(window) => window.feed(chunk),
                ResponseScan::None | ResponseScan::Done(_) => {}
            }
        }
        if end_of_stream {
            if let ResponseScan::Stream(scanner) = &mut ctx.response
                && ctx.strip_usage
            {
                let rest = scanner.take_pending();
                if !rest.is_empty() {
                    let mut out = body.take().map(Vec::from).unwrap_or_default();
                    out.extend_from_slice(&rest);
                    *body = Some(Bytes::from(out));
                }
            }
            ctx.content_events = ctx.response.content_events();
            ctx.response = ResponseScan::Done(ctx.response.usage());
        }
        Ok(None)
    }

    /// A client that leaves mid-answer is routine (a closed tab, a cancelled call): it is
    /// metered, not logged as an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        error.esource() == &pingora::ErrorSource::Downstream
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
        self.metrics
            .upstream_errors
            .with_label_values(&[ctx.provider_name(), e.etype().as_str()])
            .inc();
        // Nothing was sent yet: another deployment can take the request.
        if ctx
            .route
            .as_ref()
            .is_some_and(|r| r.pick(ctx.tried).is_some())
        {
            e.set_retry(true);
        }
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
        self.metrics
            .upstream_errors
            .with_label_values(&[ctx.provider_name(), e.etype().as_str()])
            .inc();
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A pooled connection that turned out dead before anything reached the client can be
        // replayed: the gateway holds the whole body. Pingora's default refuses it for POST.
        // Only a failure right after sending: a connection that dies while the upstream is
        // generating must not be replayed (the generation would be paid for twice).
        let soon = ctx
            .attempt_started
            .is_some_and(|t| t.elapsed() < REPLAY_WINDOW);
        if final_response(session).is_none() && soon && ctx.replays < MAX_REPLAYS {
            e.retry.decide_reuse(client_reused);
            if e.retry() {
                ctx.replays += 1;
                if let Some(index) = ctx.deployment {
                    ctx.tried.unmark(index);
                }
            }
        } else {
            e.set_retry(false);
        }
        e
    }

    /// Shapes Pingora's own failures like every other gateway error.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // The deployments left after a failure were all at their limits: a 429, as when that
        // is so from the start.
        let refused = ctx.fallback_refusal.take().filter(|_| {
            final_response(session).is_none()
                && ctx
                    .route
                    .as_ref()
                    .is_some_and(|r| r.pick(ctx.tried).is_none())
        });
        let Some(err) = refused
            .or_else(|| GatewayError::from_proxy_failure(e, ctx.model_name(), ctx.provider_name()))
        else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        self.count_refusal(&err);
        let error_code = match final_response(session) {
            None => {
                if let Err(write) = respond::error(session, &err, &ctx.request_id).await {
                    tracing::debug!("could not send the error response: {write}");
                }
                err.status().as_u16()
            }
            Some(status) => {
                // The status is gone already; a stream can still carry an error event, unless
                // the upstream broke off mid-event (it would merge into the unfinished line).
                if let ResponseScan::Stream(scanner) = &ctx.response
                    && scanner.pending_len() == 0
                {
                    let _ = session
                        .write_response_body(Some(err.sse_event()), true)
                        .await;
                }
                status
            }
        };
        ctx.error = Some(err);
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.in_flight {
            self.metrics.in_flight.dec();
        }
        if let (Some(_), Some(endpoint)) = (&ctx.principal, ctx.endpoint) {
            self.meter.record(finished(session, ctx, endpoint));
        }
        let status = final_response(session).unwrap_or(0);
        let endpoint = ctx.endpoint.map_or("other", |e| e.as_str());
        let (model, provider) = (ctx.model_name(), ctx.provider_name());
        let elapsed = ctx.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[endpoint, model, provider, status_label(status)])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[endpoint, model])
            .observe(elapsed.as_secs_f64());
        let usage = ctx.response.usage();
        if let Some(usage) = usage {
            self.metrics
                .tokens
                .with_label_values(&[model, provider, "prompt"])
                .inc_by(usage.prompt_tokens);
            self.metrics
                .tokens
                .with_label_values(&[model, provider, "completion"])
                .inc_by(usage.completion_tokens);
        }
        let stream = matches!(ctx.response, ResponseScan::Stream(_)) || ctx.probe.stream;
        tracing::info!(
            target: "tollgate::access",
            request_id = %ctx.request_id,
            method = %session.req_header().method,
            path = session.req_header().uri.path(),
            status,
            model,
            provider,
            stream,
            attempts = ctx.attempts,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            ttfb_ms = ctx.first_byte_at.map(|t| t.duration_since(ctx.started).as_secs_f64() * 1e3),
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            error = ctx.error.as_ref().map(|e| e.code().unwrap_or("internal")).or(e.map(|e| e.etype().as_str())),
        );
    }
}

/// The metering record of an authenticated proxy request (answered, refused or aborted).
fn finished(session: &Session, ctx: &mut RequestCtx, endpoint: Endpoint) -> Finished {
    let (key_id, user_id, team_id) = match &ctx.principal {
        Some(Principal::Key(k)) => (Some(k.id()), k.record.key.user_id, k.record.key.team_id),
        Some(Principal::Jwt(s)) => match s.kind {
            SubjectKind::User => (None, Some(s.id), None),
            SubjectKind::Team => (None, None, Some(s.id)),
        },
        _ => (None, None, None),
    };
    let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let model = match (&ctx.route, &ctx.probe.model) {
        (Some(route), _) => route.model.clone(),
        (None, Some(asked)) => asked.clone(),
        (None, None) => String::new(),
    };
    Finished {
        event_id: metering::event_id(),
        request_id: ctx.request_id.clone(),
        occurred_at: chrono::Utc::now(),
        key_id,
        user_id,
        team_id,
        model,
        deployment: ctx.provider_name().to_string(),
        status: final_response(session).unwrap_or(0),
        latency_ms: millis(ctx.started.elapsed()),
        ttft_ms: ctx
            .first_byte_at
            .map(|t| millis(t.duration_since(ctx.started))),
        usage: ctx.response.usage(),
        upstream_ok: ctx.upstream_ok,
        streamed: ctx.streamed,
        endpoint,
        request_body: ctx.body.clone(),
        content_events: ctx.content_events.max(ctx.response.content_events()),
        response_bytes: ctx.response_bytes,
        pricing: ctx.route.as_ref().and_then(|r| r.pricing),
        settlements: settlements(ctx),
    }
}

/// The request's reservations, each settled to the real usage only where it was served: the
/// client's scopes always, a deployment's limits only for the deployment that answered.
fn settlements(ctx: &mut RequestCtx) -> Vec<Settlement> {
    let served = ctx.deployment;
    let mut out = Vec::with_capacity(1 + ctx.fallback_holds.len());
    if let Some(mut admitted) = ctx.admitted.take() {
        if ctx.reserved_deployment.is_some()
            && ctx.reserved_deployment != served
            && let Some(elsewhere) = admitted.split_deployment()
        {
            out.push(Settlement {
                admitted: elsewhere,
                used: false,
            });
        }
        out.push(Settlement {
            admitted,
            used: true,
        });
    }
    for (index, admitted) in ctx.fallback_holds.drain(..) {
        out.push(Settlement {
            admitted,
            used: Some(index) == served,
        });
    }
    out
}

/// A deployment's own limits as a quota scope, if it has any.
fn deployment_scope(d: &RouteDeployment) -> Option<Scoped> {
    (d.rpm.is_some() || d.tpm.is_some()).then(|| Scoped {
        scope: d.scope(),
        limits: Limits {
            rpm: d.rpm,
            tpm: d.tpm,
            ..Default::default()
        },
        owner: Owner::Deployment,
    })
}

/// The status of the final response sent to the client, if any: an interim
/// `100 Continue` does not count.
fn final_response(session: &Session) -> Option<u16> {
    session
        .response_written()
        .filter(|r| !r.status.is_informational())
        .map(|r| r.status.as_u16())
}

/// The client's `x-request-id` when it is a sane token, else a new one.
fn request_id(req: &RequestHeader) -> String {
    if let Some(id) = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return id.to_string();
    }
    format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
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
