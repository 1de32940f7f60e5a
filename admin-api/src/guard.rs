//! What every admin response gets whatever its handler did: security headers, no caching
//! of API data (it carries tokens, secrets and private records), and a 500 in the error
//! shape, with a request id to find it in the log, when a handler panicked.

use std::panic::AssertUnwindSafe;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::FutureExt;

use crate::error::ApiError;

/// The web UI is a static export whose pages bootstrap with inline scripts and styles: those
/// stay allowed; everything else comes from this origin only, and no site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
frame-ancestors 'none'";

const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
];

pub async fn guard(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let id = request_id(&req);
    let mut response = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => panicked(panic.as_ref()),
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if !headers.contains_key("x-request-id")
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        headers.insert("x-request-id", value);
    }
    response
}

/// The client's `x-request-id` when it is a sane token, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(new_request_id, str::to_string)
}

pub fn new_request_id() -> String {
    format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// The answer to a request whose handler panicked; the panic is logged under an id the
/// client gets in `x-request-id`.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Response {
    let id = new_request_id();
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(request_id = %id, "an admin API handler panicked: {what}");
    let mut response =
        ApiError::Internal(format!("handler panicked (request {id})")).into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_in_the_error_shape() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = Router::new()
            .route("/api/boom", get(boom))
            .route("/api/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(guard));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();

        let reply = http
            .get(format!("http://{addr}/api/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 500);
        assert!(reply.headers().contains_key("x-request-id"));
        assert_eq!(reply.headers()["cache-control"], "no-store");
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error");

        // The server goes on serving.
        let reply = http
            .get(format!("http://{addr}/api/fine"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers()["x-frame-options"], "DENY");
    }
}
