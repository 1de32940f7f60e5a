//! The admin listener serves the web UI outside `/api`: a page for `/` and any deep link
//! (or, in a build without the UI, how to build it), never the API's JSON 404; the API's
//! own unknown routes stay JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{App, Backend, CORS_ORIGIN};

#[tokio::test]
async fn pages_outside_the_api_are_the_web_ui() {
    let app = App::spawn(Backend::Sqlite).await;
    for path in ["/", "/keys", "/keys/key_123", "/no/such/page"] {
        let resp = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        // Security headers apply to the UI too.
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        let text = resp.text().await.unwrap();
        assert!(text.contains("<html"), "{path}: {text}");
    }
    let api = app.call("GET", "/api/no-such-route", None, None).await;
    assert_eq!(api.status, 404);
    assert_eq!(api.body["error"]["code"], "not_found");
    let post = app.call("POST", "/keys", None, None).await;
    assert_eq!(post.status, 404);
}

/// The UI's scripts go out gzipped to a client that takes it (and as they are otherwise),
/// so the first load transfers a fraction of the export's size.
#[tokio::test]
async fn text_assets_are_gzipped_for_clients_that_take_it() {
    let app = App::spawn(Backend::Sqlite).await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let page = raw
        .get(format!("{}/", app.base))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.headers().get("content-encoding").cloned();
    let body = page.bytes().await.unwrap();
    if html.is_none() {
        // A build without the UI: the short "how to build it" page, not worth compressing.
        assert!(String::from_utf8_lossy(&body).contains("not built"));
        return;
    }
    assert_eq!(html.unwrap(), "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    let script = text
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|s| s.starts_with("/_next/static/") && s.ends_with(".js"))
        .expect("the page loads a script")
        .to_string();
    let plain = raw
        .get(format!("{}{script}", app.base))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain = plain.bytes().await.unwrap();
    let packed = raw
        .get(format!("{}{script}", app.base))
        .header("accept-encoding", "gzip;q=1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(packed.headers()["content-encoding"], "gzip");
    assert!(
        packed.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let packed = packed.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, plain);
    assert!(
        packed.len() * 2 < plain.len(),
        "{} vs {}",
        packed.len(),
        plain.len()
    );
    // A client that refuses gzip gets it plain.
    let refused = raw
        .get(format!("{}{script}", app.base))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("content-encoding").is_none());
}

/// Every response carries a content security policy fit for the UI and the other security
/// headers; only the configured origin may call the API from a browser.
#[tokio::test]
async fn security_headers_everywhere_and_cors_only_for_the_allowed_origin() {
    let app = App::spawn(Backend::Sqlite).await;
    for path in [
        "/",
        "/api/auth/me",
        "/api/openapi.json",
        "/api/no-such-route",
    ] {
        let resp = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(!h.contains_key("access-control-allow-origin"), "{path}");
    }
    let token = app.token(&app.admin);
    let from = |origin: &str| {
        app.http
            .get(format!("{}/api/auth/me", app.base))
            .bearer_auth(&token)
            .header("origin", origin)
    };
    let allowed = from(CORS_ORIGIN).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        CORS_ORIGIN
    );
    let other = from("https://evil.example.net").send().await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    // A preflight from the allowed origin is answered; from another, it is not allowed.
    let preflight = |origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/keys", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight(CORS_ORIGIN).await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], CORS_ORIGIN);
    assert!(
        ok.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
