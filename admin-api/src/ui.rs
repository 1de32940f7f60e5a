//! The operator's web UI (`web-admin/`, a static export) served at `/` from files embedded
//! in the binary at build time. A path names a file, or a page (`/keys` → `keys.html`);
//! anything else gets the app's index, so deep links work. Hashed assets are cached for a
//! year, pages not at all. When the UI was not built, `/` says how to build it.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "../web-admin/out/"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tollgate</title></head><body>\
<h1>Tollgate</h1><p>The web UI is not built into this binary. Build it with \
<code>./scripts/run</code> (or <code>cd web-admin &amp;&amp; npm ci &amp;&amp; npm run build</code>, then \
build <code>tollgate</code> again). The admin API is at <a href=\"/api/docs/\">/api/docs/</a>.</p></body></html>";

/// The UI's answer for `uri` (any path outside `/api`).
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let candidates = [
        path.to_string(),
        format!("{path}.html"),
        format!(
            "{}index.html",
            if path.is_empty() || path.ends_with('/') {
                path.to_string()
            } else {
                format!("{path}/")
            }
        ),
    ];
    let found = candidates
        .iter()
        .find_map(|name| Assets::get(name).map(|file| (name.clone(), file)))
        .or_else(|| Assets::get("index.html").map(|file| ("index.html".to_string(), file)));
    let Some((name, file)) = found else {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response();
    };
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    // Next's hashed assets never change under their name; pages must be fetched anew.
    let cache = if name.starts_with("_next/static/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
