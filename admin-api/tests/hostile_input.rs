//! Hostile input gets an answer in the error shape, never a dropped connection: huge page
//! numbers on every paginated list; and every response carries the security headers, with
//! API data never cached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{App, MASTER_KEY};

both!(
    huge_page_numbers_are_refused_by_name,
    |app: App| async move {
        let member = app.token(&app.member);
        for (path, token) in [
            ("/api/keys", member.as_str()),
            ("/api/keys", MASTER_KEY),
            ("/api/users", MASTER_KEY),
            ("/api/teams", MASTER_KEY),
            ("/api/audit", MASTER_KEY),
        ] {
            for query in [
                "page=9223372036854775807",
                "page=18446744073709551615",
                "page=1000000001",
            ] {
                let reply = app
                    .call("GET", &format!("{path}?{query}"), Some(token), None)
                    .await;
                assert_eq!(reply.status, 422, "{path}?{query}: {}", reply.text);
                assert_eq!(reply.body["error"]["param"], "page", "{path}?{query}");
            }
            let reply = app
                .call(
                    "GET",
                    &format!("{path}?per_page=9223372036854775807"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(reply.status, 422, "{path}: {}", reply.text);
            assert_eq!(reply.body["error"]["param"], "per_page");
            // The last page there can be still answers, empty.
            let reply = app
                .call(
                    "GET",
                    &format!("{path}?page=1000000000&per_page=500"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text);
            assert_eq!(reply.body["data"], serde_json::json!([]));
        }
    }
);

both!(
    responses_carry_security_headers_and_api_data_is_not_cached,
    |app: App| async move {
        // Hold the whole app (its database above all), not only the fields used below.
        let app = app;
        let requests = [
        (
            app.http
                .post(format!("{}/api/auth/login", app.base))
                .json(&serde_json::json!({ "email": "admin@example.com", "password": common::PASSWORD })),
            200,
        ),
        (
            app.http
                .post(format!("{}/api/keys", app.base))
                .bearer_auth(MASTER_KEY)
                .json(&serde_json::json!({ "name": "k" })),
            201,
        ),
        (app.http.get(format!("{}/api/nothing-here", app.base)), 404),
    ];
        for (request, status) in requests {
            let reply = request.send().await.unwrap();
            let headers = reply.headers().clone();
            let code = reply.status();
            let text = reply.text().await.unwrap();
            assert_eq!(code, status, "{text}");
            assert_eq!(headers["cache-control"], "no-store");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "no-referrer");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.contains("default-src 'self'"), "{csp}");
        }
    }
);
