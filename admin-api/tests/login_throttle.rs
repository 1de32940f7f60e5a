//! Logins are throttled per client address and per account: failed attempts beyond the
//! limit (10 a minute) get 429 with `retry-after` without the password being checked, and
//! logins that succeed do not count. Client addresses are played by binding the client to
//! other loopback addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::IpAddr, time::Duration};

use common::{App, Backend, PASSWORD};
use serde_json::{Value, json};

const LIMIT: usize = 10;

/// A login from `from` (a loopback address); its status, `retry-after` and body.
async fn login(app: &App, from: &str, email: &str, password: &str) -> (u16, Option<u64>, Value) {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address() {
    let app = App::spawn(Backend::Sqlite).await;
    // Failures against several accounts from one address.
    for i in 0..LIMIT {
        let email = [
            "member@example.com",
            "viewer@example.com",
            "nobody@example.com",
        ][i % 3];
        let (status, ..) = login(&app, "127.0.0.2", email, "wrong-password-123").await;
        assert_eq!(status, 401, "attempt {i}");
    }
    // Then even the right password, for another account, is refused from that address...
    let (status, retry, body) = login(&app, "127.0.0.2", "admin@example.com", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("no retry-after");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    // ...but not from another.
    let (status, _, body) = login(&app, "127.0.0.3", "admin@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_account() {
    let app = App::spawn(Backend::Sqlite).await;
    // Failures for one account, each from an address of its own.
    for i in 0..LIMIT {
        let from = format!("127.0.1.{}", i + 1);
        let (status, ..) = login(&app, &from, "Member@Example.com", "wrong-password-123").await;
        assert_eq!(status, 401, "attempt {i}");
    }
    let (status, retry, _) = login(&app, "127.0.2.1", "member@example.com", PASSWORD).await;
    assert_eq!((status, retry.is_some()), (429, true));
    // Other accounts log in as usual.
    let (status, ..) = login(&app, "127.0.2.1", "viewer@example.com", PASSWORD).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_that_succeed_do_not_count() {
    let app = App::spawn(Backend::Sqlite).await;
    for i in 0..2 * LIMIT {
        let (status, _, body) = login(&app, "127.0.3.1", "member@example.com", PASSWORD).await;
        assert_eq!(status, 200, "login {i}: {body}");
    }
    // And a few failures after them are still answered as failures.
    let (status, ..) = login(
        &app,
        "127.0.3.1",
        "member@example.com",
        "wrong-password-123",
    )
    .await;
    assert_eq!(status, 401);
}
