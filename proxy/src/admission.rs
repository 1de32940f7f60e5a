//! What `request_filter` decides: the endpoint, who is calling, the body and the model it
//! names, the route, and the quota. A request is proxied, answered here (the model list),
//! or refused with the error the client gets.

use bytes::Bytes;
use pingora::{http::RequestHeader, proxy::Session};
use tollgate_core::body::{self, RequestProbe};

use crate::{
    auth::Principal,
    cache::{Asked, Directives, Outcome, Verdict},
    context::RequestCtx,
    downstream::{
        endpoints::{self, Endpoint, Target},
        models::Allows,
        request_body,
    },
    error::GatewayError,
    gateway::Gateway,
    quota::{limiter::Claim, scopes},
    routing::{Route, choice},
};

pub enum Admission {
    /// Proxy it.
    Proceed,
    /// Answer it with this JSON (the model list).
    Answer(Bytes),
    /// Refuse it with this error.
    Refuse(GatewayError),
    /// Answer it from the response cache (`ctx.cache.hit`).
    Cached,
}

pub async fn admit(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Admission> {
    let endpoint = match authorize(gateway, session.req_header(), ctx).await {
        Ok(Target::Proxy(endpoint)) => endpoint,
        Ok(Target::ListModels) => {
            let restriction = restriction(ctx);
            let allows = restriction.as_ref().map(|r| r as Allows<'_>);
            return Ok(Admission::Answer(gateway.live.load().models.list(allows)));
        }
        Ok(Target::GetModel(id)) => {
            let restriction = restriction(ctx);
            let allows = restriction.as_ref().map(|r| r as Allows<'_>);
            return Ok(match gateway.live.load().models.get(&id, allows) {
                Some(model) => Admission::Answer(model),
                None => Admission::Refuse(GatewayError::UnknownModel(id)),
            });
        }
        Err(e) => return Ok(Admission::Refuse(e)),
    };
    ctx.request.endpoint = Some(endpoint);
    let directives = Directives::of(&session.req_header().headers);
    Ok(
        match request_body::read_capped(session, gateway.max_body_bytes, gateway.body_timeout)
            .await?
        {
            Ok(body) => match route_and_reserve(gateway, ctx, endpoint, body, directives).await {
                Ok(()) if ctx.cache.hit.is_some() => Admission::Cached,
                Ok(()) => Admission::Proceed,
                Err(e) => Admission::Refuse(e),
            },
            Err(e) => Admission::Refuse(e),
        },
    )
}

/// The models a key restricted to some may use; `None` for every other caller.
fn restriction(ctx: &RequestCtx) -> Option<impl Fn(&str, &str) -> bool + '_> {
    match &ctx.caller {
        Some(Principal::Key(key)) if key.allowed_models.is_some() => {
            Some(|asked: &str, own: &str| key.allows(asked, own))
        }
        _ => None,
    }
}

/// Which endpoint, and who calls it.
async fn authorize(
    gateway: &Gateway,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<Target, GatewayError> {
    let target = endpoints::classify(&req.method, req.uri.path())?;
    // Known before authenticating: a refusal answers in this endpoint's error shape.
    if let Target::Proxy(endpoint) = target {
        ctx.request.endpoint = Some(endpoint);
    }
    ctx.caller = Some(gateway.auth.authenticate(&req.headers).await?);
    Ok(target)
}

/// Resolves the body's model to a route, consults the response cache, and reserves the
/// request's quotas (for a hit, only its requests and concurrency, and the hit's cost).
async fn route_and_reserve(
    gateway: &Gateway,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    body: Bytes,
    directives: Directives,
) -> Result<(), GatewayError> {
    let probe = body::probe(&body).map_err(|e| GatewayError::InvalidBody(e.to_string()))?;
    let model = probe.model.as_deref().ok_or(GatewayError::MissingModel)?;
    // This request's snapshot of the routes: a reload from now on does not change it.
    let table = gateway.live.load().routes.clone();
    let route = table
        .get(model)
        .ok_or_else(|| GatewayError::UnknownModel(model.to_string()))?;
    ctx.request.translated = check_anthropic(route, endpoint, &body)?;
    let now = chrono::Utc::now();
    let scopes = match &ctx.caller {
        Some(Principal::Key(key)) => {
            if !key.allows(model, &route.model) {
                return Err(GatewayError::ModelNotAllowed(model.to_string()));
            }
            scopes::scopes(key, now)
        }
        Some(Principal::Jwt(subject)) => scopes::subject_scopes(subject, now),
        Some(Principal::Master) | None => Vec::new(),
    };
    let asked = Asked {
        policy: &route.cache,
        endpoint,
        caller: ctx.caller.as_ref(),
        asked_model: model,
        model: &route.model,
        body: &body,
        stream: probe.stream,
        directives,
    };
    match gateway.cache.consult(&asked).await {
        Verdict::Off => {}
        Verdict::Bypass => ctx.cache.outcome = Some(Outcome::Bypass),
        Verdict::Miss(capture) => {
            ctx.cache.outcome = Some(Outcome::Miss);
            ctx.cache.capture = Some(capture);
        }
        Verdict::Hit(hit) => {
            ctx.request.client_wants_usage = probe.include_usage == Some(true);
            ctx.request.probe = probe;
            ctx.route.route = Some(route.clone());
            let cost = hit.hit_cost.of(route.pricing.as_ref().map_or(0, |p| {
                p.cost(hit.entry.prompt_tokens, hit.entry.completion_tokens)
            }));
            let claim = Claim {
                request_id: &ctx.id,
                body_len: body.len(),
                probe: &ctx.request.probe,
                completes: false,
                pricing: None,
            };
            if let Some(mut reservation) = gateway
                .limiter
                .reservation(scopes::for_cache_hit(scopes, cost > 0), &claim)
            {
                reservation.tokens = 0;
                reservation.cost = cost;
                ctx.holds.admitted =
                    Some(gateway.limiter.admit(reservation, &gateway.metrics).await?);
            }
            ctx.cache.outcome = Some(Outcome::Hit);
            ctx.cache.hit = Some(hit);
            return Ok(());
        }
    }
    let claim = Claim {
        request_id: &ctx.id,
        body_len: body.len(),
        probe: &probe,
        completes: endpoint != Endpoint::Embeddings,
        pricing: route.pricing.as_ref(),
    };
    let (preselected, probing) = choice::first(
        &gateway.limiter,
        &gateway.metrics,
        route,
        scopes,
        &claim,
        &mut ctx.holds,
    )
    .await?;
    ctx.route.preselected = preselected;
    if probing {
        ctx.route.pending_probe = preselected.map(|i| route.deployments[i].health.clone());
    }
    ctx.route.route = Some(route.clone());
    ctx.route.table = Some(table.clone());
    ctx.request.client_wants_usage = probe.include_usage == Some(true);
    let (body, probe) = ask_for_usage(ctx, endpoint, body, probe)?;
    ctx.request.client_body = body;
    ctx.request.probe = probe;
    Ok(())
}

/// A model with Anthropic deployments serves chat completions only, and the request must
/// translate for each of them (a parameter Anthropic cannot take is refused here, by name,
/// before any quota is reserved).
/// Answers the translated bodies, by deployment id, for the attempts to use.
fn check_anthropic(
    route: &Route,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Vec<(usize, Bytes)>, GatewayError> {
    let mut translated = Vec::new();
    if endpoint.is_anthropic() {
        // Forwarded as sent: only Anthropic deployments can take it.
        if route
            .deployments
            .iter()
            .any(|d| d.upstream.anthropic.is_none())
        {
            return Err(GatewayError::NotAnAnthropicModel(route.model.clone()));
        }
        return Ok(translated);
    }
    for deployment in &route.deployments {
        let Some(options) = &deployment.upstream.anthropic else {
            continue;
        };
        if endpoint != Endpoint::ChatCompletions {
            return Err(GatewayError::EndpointNotServed(route.model.clone()));
        }
        let body =
            crate::context::translate_for_anthropic(body, &deployment.upstream_model, options)?;
        translated.push((deployment.id, Bytes::from(body)));
    }
    Ok(translated)
}

/// Streams must report their usage to be metered exactly: asks for it, and has the extra
/// event taken out again for clients that did not (see `metering::scan`).
fn ask_for_usage(
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    body: Bytes,
    probe: RequestProbe,
) -> Result<(Bytes, RequestProbe), GatewayError> {
    if !(probe.stream
        && probe.include_usage != Some(true)
        && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions))
    {
        return Ok((body, probe));
    }
    let (body, probe) = body::with_include_usage(&body, &probe)
        .map_err(|e| GatewayError::InvalidBody(e.to_string()))?;
    ctx.response.strip_usage = true;
    Ok((body, probe))
}
