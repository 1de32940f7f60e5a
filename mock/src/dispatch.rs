//! The single request entry point: routes, counts, and hands off to the API pipeline or the
//! `/_mock/*` control endpoints.

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use bytes::Bytes;

use crate::app::App;
use crate::chat::Chat;
use crate::completions::Completions;
use crate::embeddings::Embeddings;
use crate::errors::ApiError;
use crate::pipeline::{self, reject};
use crate::reply::{self, Ctx, Reply};
use crate::responses::Responses;
use crate::routes::{Api, Control, Route, resolve};
use crate::server::ConnAbort;
use crate::stats::{Endpoint, Rejection};

pub(crate) async fn handle(app: &App, req: Request<Body>, conn: Option<ConnAbort>) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    match resolve(&parts.method, path) {
        Route::Control(c) => control(app, c),
        Route::Api { api, azure } => {
            app.stats.request(api.endpoint(), azure.is_some());
            let ctx = Ctx::new(&parts.headers, &app.ids, conn);
            match api {
                Api::Chat => pipeline::post::<Chat>(app, &ctx, &parts, body, azure).await,
                Api::Completions => {
                    pipeline::post::<Completions>(app, &ctx, &parts, body, azure).await
                }
                Api::Embeddings => {
                    pipeline::post::<Embeddings>(app, &ctx, &parts, body, azure).await
                }
                Api::Responses => pipeline::post::<Responses>(app, &ctx, &parts, body, azure).await,
                Api::Messages => crate::messages::post(app, &ctx, &parts, body, false).await,
                Api::CountTokens => crate::messages::post(app, &ctx, &parts, body, true).await,
                Api::Models => pipeline::get_models(app, &ctx, &parts, None).await,
                Api::Model(id) => pipeline::get_models(app, &ctx, &parts, Some(id)).await,
            }
        }
        Route::WrongMethod { allow } => {
            if !path.starts_with("/_mock/") {
                app.stats.request(Endpoint::Other, false);
                app.log.record(&parts, None, None);
            }
            let ctx = Ctx::new(&parts.headers, &app.ids, conn);
            let e = ApiError::method_not_allowed(parts.method.as_str(), path);
            let mut resp = reject(app, &ctx, Rejection::MethodNotAllowed, &e);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
        Route::NotFound => {
            app.stats.request(Endpoint::Other, false);
            app.log.record(&parts, None, None);
            let ctx = Ctx::new(&parts.headers, &app.ids, conn);
            reject(
                app,
                &ctx,
                Rejection::NotFound,
                &ApiError::unknown_url(parts.method.as_str(), path),
            )
        }
    }
}

/// Test and benchmark controls; never counted, recorded, or authenticated.
fn control(app: &App, c: Control) -> Reply {
    let json = |v: Result<Vec<u8>, serde_json::Error>| match v {
        Ok(body) => reply::control(StatusCode::OK, Bytes::from(body)),
        Err(e) => reply::control(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from(e.to_string()),
        ),
    };
    match c {
        Control::Stats => json(serde_json::to_vec(&app.stats.snapshot())),
        Control::Requests => json(serde_json::to_vec(&app.log.list())),
        Control::Reset => {
            app.stats.reset();
            app.log.clear();
            reply::control(StatusCode::OK, Bytes::from_static(b"{\"reset\":true}"))
        }
        Control::Health => {
            reply::control(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
        }
    }
}
