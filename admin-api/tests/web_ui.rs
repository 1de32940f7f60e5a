//! The admin listener serves the web UI outside `/api`: a page for `/` and any deep link
//! (or, in a build without the UI, how to build it), never the API's JSON 404; the API's
//! own unknown routes stay JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{App, Backend};

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
