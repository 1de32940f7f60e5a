//! The path every API request takes, in order: read body → record → Azure api-version → auth →
//! parse → directives → injected behaviour → the endpoint's answer.

use std::io;

use axum::body::Body;
use axum::http::{HeaderMap, request::Parts};
use serde::Deserialize;

use crate::app::App;
use crate::behavior::{Behavior, split_model};
use crate::errors::ApiError;
use crate::prompt::JsonStr;
use crate::reply::{self, Ctx, Reply};
use crate::stats::{Injected, Rejection};

/// Large enough for big embedding batches; larger bodies get a 413.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// What the pipeline needs from any parsed request body.
pub(crate) trait ApiRequest {
    fn model(&self) -> Option<&str>;
    /// The body's `stream` field, as sent.
    fn stream(&self) -> Option<bool>;
    /// Checks beyond JSON shape (required fields, ranges).
    fn validate(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// One POST endpoint: its body type and how it answers once all checks passed.
pub(crate) trait Endpoint {
    type Req<'a>: Deserialize<'a> + ApiRequest;
    fn respond(app: &App, ctx: &Ctx, req: &Self::Req<'_>, call: &Call<'_>) -> Reply;
}

/// The request's model (directive suffix stripped) and its directives.
pub(crate) struct Call<'a> {
    pub model: &'a str,
    pub behavior: &'a Behavior,
}

pub(crate) async fn post<E: Endpoint>(
    app: &App,
    ctx: &Ctx,
    parts: &Parts,
    body: Body,
    azure: Option<&str>,
) -> Reply {
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            app.log.record(parts, None, None);
            return reject(
                app,
                ctx,
                Rejection::BadRequest,
                &ApiError::body_too_large(BODY_LIMIT),
            );
        }
    };
    let parsed = serde_json::from_slice::<E::Req<'_>>(&bytes);
    if app.log.enabled() {
        match &parsed {
            Ok(r) => app.log.record(parts, r.model(), r.stream()),
            Err(_) => {
                let peek = serde_json::from_slice::<Peek>(&bytes).unwrap_or_default();
                app.log
                    .record(parts, peek.model.as_ref().map(|m| &*m.0), peek.stream);
            }
        }
    }
    if azure.is_some() && !has_api_version(parts.uri.query()) {
        return reject(app, ctx, Rejection::NotFound, &ApiError::azure_not_found());
    }
    if let Err(e) = app.authorize(&parts.headers, azure.is_some()) {
        return reject(app, ctx, Rejection::Unauthorized, &e);
    }
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return reject(app, ctx, Rejection::BadRequest, &ApiError::from_json(&e)),
    };
    if let Err(e) = req.validate() {
        return reject(app, ctx, Rejection::BadRequest, &e);
    }
    // Azure names the model by deployment, so the deployment stands in for a missing `model`.
    let Some(raw_model) = req.model().filter(|m| !m.is_empty()).or(azure) else {
        return reject(app, ctx, Rejection::BadRequest, &ApiError::missing("model"));
    };
    let (model, suffix) = split_model(raw_model);
    let behavior = match behavior(app, &parts.headers, suffix) {
        Ok(b) => b,
        Err(e) => return reject(app, ctx, Rejection::BadRequest, &e),
    };
    let stream = req.stream().unwrap_or(false);
    if let Some(r) = inject(app, ctx, &behavior, model, stream).await {
        return r;
    }
    if behavior.echo {
        return reply::json_ok(ctx, behavior.content_type.as_ref(), bytes.clone());
    }
    E::respond(
        app,
        ctx,
        &req,
        &Call {
            model,
            behavior: &behavior,
        },
    )
}

/// `GET /v1/models[/{id}]`: no body, so directives come from the `x-mock` header only.
pub(crate) async fn get_models(app: &App, ctx: &Ctx, parts: &Parts, id: Option<&str>) -> Reply {
    app.log.record(parts, None, None);
    if let Err(e) = app.authorize(&parts.headers, false) {
        return reject(app, ctx, Rejection::Unauthorized, &e);
    }
    let mut behavior = match directives(&parts.headers, None) {
        Ok(b) => b,
        Err(e) => return reject(app, ctx, Rejection::BadRequest, &e),
    };
    let list = parts.headers.get("x-mock").and_then(|v| v.to_str().ok());
    app.sequence(&mut behavior, list.unwrap_or_default());
    if let Some(r) = inject(app, ctx, &behavior, id.unwrap_or("models"), false).await {
        return r;
    }
    let ct = behavior.content_type.as_ref();
    match id {
        None => reply::json_ok(ctx, ct, app.models_list.clone()),
        Some(id) => match crate::models::one_body(id) {
            Some(body) => reply::json_ok(ctx, ct, body),
            None => reject(
                app,
                ctx,
                Rejection::NotFound,
                &ApiError::model_not_found(id),
            ),
        },
    }
}

pub(crate) fn reject(app: &App, ctx: &Ctx, why: Rejection, e: &ApiError) -> Reply {
    app.stats.rejected(why);
    reply::error(ctx, e)
}

/// The request's directives, counted in their sequence (see [`App::sequence`]).
pub(crate) fn behavior(
    app: &App,
    headers: &HeaderMap,
    suffix: Option<&str>,
) -> Result<Behavior, ApiError> {
    let mut behavior = directives(headers, suffix)?;
    let header = headers.get("x-mock").and_then(|v| v.to_str().ok());
    let list = format!(
        "{}@{}",
        header.unwrap_or_default(),
        suffix.unwrap_or_default()
    );
    app.sequence(&mut behavior, &list);
    Ok(behavior)
}

/// Header directives first, then the model suffix, so the suffix wins on conflicts.
fn directives(headers: &HeaderMap, suffix: Option<&str>) -> Result<Behavior, ApiError> {
    let mut b = Behavior::default();
    if let Some(v) = headers.get("x-mock") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::directive("x-mock header is not valid text".to_owned()))?;
        b.apply(v).map_err(ApiError::directive)?;
    }
    if let Some(s) = suffix {
        b.apply(s).map_err(ApiError::directive)?;
    }
    Ok(b)
}

/// Runs the failure directives. `None` means "answer normally".
pub(crate) async fn inject(
    app: &App,
    ctx: &Ctx,
    b: &Behavior,
    model: &str,
    stream: bool,
) -> Option<Reply> {
    if !b.latency.is_zero() {
        tokio::time::sleep(b.latency).await;
    }
    if b.hang || (b.stall_after.is_some() && !stream) {
        app.stats.injected(Injected::Hang);
        // Parked without polling; hyper drops this future when the client disconnects.
        return Some(std::future::pending::<Reply>().await);
    }
    if b.reset || (b.reset_after.is_some() && !stream) {
        app.stats.injected(Injected::Reset);
        return Some(abort_connection(ctx).await);
    }
    if b.html {
        app.stats.injected(Injected::Html);
        return Some(reply::html_502(ctx));
    }
    if let Some(code) = b.status {
        app.stats.injected_status(code);
        return Some(reply::error(
            ctx,
            &ApiError::injected(code, model, b.retry_after),
        ));
    }
    None
}

/// Closes the connection with no response at all. Our own accept loop owns the socket and
/// drops it on request; embedded in someone else's server (`router()`), the best we can do
/// is a body that fails at once, which hyper turns into an abrupt close.
async fn abort_connection(ctx: &Ctx) -> Reply {
    if let Some(conn) = &ctx.conn {
        conn.abort();
        return std::future::pending::<Reply>().await;
    }
    let failing = futures_util::stream::once(async {
        Err::<bytes::Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "tollgate-mock: reset",
        ))
    });
    Reply::new(Body::from_stream(failing))
}

fn has_api_version(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.strip_prefix("api-version=")
                .is_some_and(|v| !v.is_empty())
        })
    })
}

/// Best-effort `model` / `stream` of a body that failed its endpoint's parse, for the request log.
#[derive(Default, Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<JsonStr<'a>>,
    #[serde(default)]
    stream: Option<bool>,
}
