//! The operator's web UI (`web-admin/`, a static export) served at `/` from files embedded
//! in the binary at build time. A path names a file, or a page (`/keys` → `keys.html`);
//! anything else gets the app's index, so deep links work. Hashed assets are cached for a
//! year, pages not at all. Text files go out gzipped to clients that take it (compressed
//! once, on first request). When the UI was not built, `/` says how to build it.

use std::{
    collections::HashMap,
    io::Write,
    sync::{LazyLock, RwLock},
};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
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

/// Gzipped copies of the text files asked for so far, by name.
static GZIPPED: LazyLock<RwLock<HashMap<String, Bytes>>> = LazyLock::new(Default::default);

/// Whether the client takes gzip (a `gzip` coding not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// The gzipped form of a text file worth compressing; `None` for images and tiny files.
fn gzipped(name: &str, mime: &str, data: &[u8]) -> Option<Bytes> {
    let text = mime.starts_with("text/")
        || mime.contains("javascript")
        || mime.contains("json")
        || mime.contains("svg");
    if !text || data.len() < 1024 {
        return None;
    }
    if let Some(hit) = GZIPPED.read().ok()?.get(name) {
        return Some(hit.clone());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).ok()?;
    let packed = Bytes::from(encoder.finish().ok()?);
    if let Ok(mut cache) = GZIPPED.write() {
        cache.insert(name.to_string(), packed.clone());
    }
    Some(packed)
}

/// The UI's answer for `uri` (any path outside `/api`).
pub async fn serve(uri: Uri, request: &HeaderMap) -> Response {
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
    let mime = file.metadata.mimetype();
    let packed = accepts_gzip(request)
        .then(|| gzipped(&name, mime, &file.data))
        .flatten();
    let mut response = match &packed {
        Some(bytes) => Response::new(Body::from(bytes.clone())),
        None => Response::new(Body::from(file.data.into_owned())),
    };
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    if packed.is_some() {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    // Next's hashed assets never change under their name; pages must be fetched anew.
    let cache = if name.starts_with("_next/static/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
