//! Admin logins through the real gateway: replicas sharing Redis throttle failed logins
//! together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Mock, client};
use serde_json::json;

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two replicas sharing Redis count failed admin logins together: failures spread over
/// both exhaust the account's attempts on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_login_throttle_through_redis() {
    let url = redis_url();
    let prefix = format!("tglogin{}", fastrand::u64(..));
    let envs = [
        ("TOLLGATE_REDIS_URL", url.as_str()),
        ("TOLLGATE_REDIS_PREFIX", prefix.as_str()),
        ("TOLLGATE_ADMIN_EMAIL", "root@example.com"),
        ("TOLLGATE_ADMIN_PASSWORD", "a-long-enough-password"),
    ];
    let mock = Mock::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let route = common::mock_route(&mock);
    let a = Gateway::spawn_in_env(dir_a.path(), &route, "", &envs).await;
    let b = Gateway::spawn_in_env(dir_b.path(), &route, "", &envs).await;
    let login = |gateway: &Gateway, password: &str| {
        let url = format!("http://{}/api/auth/login", gateway.admin);
        let body = json!({ "email": "root@example.com", "password": password });
        async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for i in 0..10 {
        let replica = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            login(replica, "wrong-password-123").await,
            401,
            "attempt {i}"
        );
    }
    assert_eq!(login(&a, "a-long-enough-password").await, 429);
    assert_eq!(login(&b, "a-long-enough-password").await, 429);
}
