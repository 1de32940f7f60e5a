//! JWTs from a configured issuer as client credentials: accepted when signed by the
//! issuer's key with an allowed algorithm, for the right audience and in time; refused
//! (401) otherwise; and counted against the named user's limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Gateway, Mock, client, mock_route};
use josekit::{
    jws::{ES256, JwsHeader},
    jwt::{self, JwtPayload},
};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.com/";

struct Idp {
    signer_jwk: josekit::jwk::Jwk,
    public_jwk: String,
}

impl Idp {
    fn new(kid: &str) -> Idp {
        let pair = ES256.generate_key_pair().unwrap();
        let mut private = pair.to_jwk_private_key();
        private.set_key_id(kid);
        let mut public = pair.to_jwk_public_key();
        public.set_key_id(kid);
        Idp {
            signer_jwk: private,
            public_jwk: public.to_string(),
        }
    }

    fn token(&self, claims: Value) -> String {
        let mut payload = JwtPayload::new();
        let now = SystemTime::now();
        payload.set_issuer(ISSUER);
        payload.set_audience(vec!["tollgate"]);
        payload.set_issued_at(&now);
        payload.set_expires_at(&(now + Duration::from_secs(300)));
        for (k, v) in claims.as_object().unwrap() {
            match k.as_str() {
                "exp_ago" => {
                    payload.set_expires_at(&(now - Duration::from_secs(v.as_u64().unwrap())))
                }
                "aud" => payload.set_audience(vec![v.as_str().unwrap()]),
                "iss" => payload.set_issuer(v.as_str().unwrap()),
                _ => payload.set_claim(k, Some(v.clone())).unwrap(),
            }
        }
        let mut header = JwsHeader::new();
        header.set_key_id(self.signer_jwk.key_id().unwrap());
        let signer = ES256.signer_from_jwk(&self.signer_jwk).unwrap();
        jwt::encode_with_signer(&payload, &header, &signer).unwrap()
    }
}

async fn chat(gateway: &Gateway, token: &str) -> (u16, Value) {
    common::send_chat(
        client()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn issuer_tokens_authenticate_users_and_bad_ones_are_refused() {
    let idp = Idp::new("key-1");
    let rotated = Idp::new("key-2");
    let dir = tempfile::tempdir().unwrap();
    // One key inline, the next one in a JWKS file.
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(
        &jwks_file,
        format!("{{\"keys\": [{}]}}", rotated.public_jwk),
    )
    .unwrap();
    let mock = Mock::spawn();
    let auth = format!(
        "auth:\n  jwt_issuers:\n    - issuer: '{ISSUER}'\n      audience: tollgate\n      algorithms: [ES256]\n      jwks: ['{}']\n      jwks_file: '{}'\n",
        idp.public_jwk,
        jwks_file.display()
    );
    let gateway = Gateway::spawn_in(dir.path(), &format!("{}{auth}", mock_route(&mock)), "").await;
    let (status, user) = gateway
        .admin("POST", "/api/users", Some(json!({ "email": "lee@example.com", "password": "long-enough-password", "role": "member" })))
        .await;
    assert_eq!(status, 201);

    let good = idp.token(json!({ "email": "lee@example.com" }));
    assert_eq!(chat(&gateway, &good).await.0, 200);
    assert_eq!(
        chat(
            &gateway,
            &rotated.token(json!({ "email": "lee@example.com" }))
        )
        .await
        .0,
        200
    );

    let stranger = Idp::new("key-1");
    let none = {
        let mut payload = JwtPayload::new();
        payload.set_issuer(ISSUER);
        payload.set_audience(vec!["tollgate"]);
        payload.set_expires_at(&(SystemTime::now() + Duration::from_secs(300)));
        payload
            .set_claim("email", Some(json!("lee@example.com")))
            .unwrap();
        jwt::encode_unsecured(&payload, &JwsHeader::new()).unwrap()
    };
    let refusals = [
        ("alg none", none),
        (
            "signed with another key",
            stranger.token(json!({ "email": "lee@example.com" })),
        ),
        (
            "expired",
            idp.token(json!({ "email": "lee@example.com", "exp_ago": 120 })),
        ),
        (
            "wrong audience",
            idp.token(json!({ "email": "lee@example.com", "aud": "someone-else" })),
        ),
        (
            "unknown issuer",
            idp.token(json!({ "email": "lee@example.com", "iss": "https://evil.example/" })),
        ),
        (
            "unknown user",
            idp.token(json!({ "email": "nobody@example.com" })),
        ),
        ("no subject claim", idp.token(json!({}))),
        (
            "unverified email",
            idp.token(json!({ "email": "lee@example.com", "email_verified": false })),
        ),
    ];
    for (what, token) in refusals {
        let (status, body) = chat(&gateway, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_token", "{what}: {body}");
    }

    // The request counts against the user's limits.
    let (status, _) = gateway
        .admin(
            "PATCH",
            &format!("/api/users/{}", user["id"]),
            Some(json!({ "limits": { "rpm_limit": 2 } })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(chat(&gateway, &good).await.0, 200);
    assert_eq!(chat(&gateway, &good).await.0, 200);
    let (status, body) = chat(&gateway, &good).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your user account"),
        "{body}"
    );

    // A disabled user's tokens stop working.
    gateway
        .admin(
            "PATCH",
            &format!("/api/users/{}", user["id"]),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(chat(&gateway, &good).await.0, 401);
}

/// A JWKS endpoint serving whatever document `jwks` holds; `up` false refuses connections
/// by answering 503.
struct JwksServer {
    addr: std::net::SocketAddr,
    jwks: std::sync::Arc<std::sync::Mutex<(bool, String)>>,
}

impl JwksServer {
    async fn start(document: String) -> JwksServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks = std::sync::Arc::new(std::sync::Mutex::new((true, document)));
        let serving = jwks.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (up, body) = serving.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let status = if up {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        JwksServer { addr, jwks }
    }

    fn set(&self, up: bool, document: String) {
        *self.jwks.lock().unwrap() = (up, document);
    }
}

async fn status_within(gateway: &Gateway, token: &str, want: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = chat(gateway, token).await;
        if status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} after 10 s, want {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Multi-threaded: the JWKS endpoint must answer while the test waits for the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_jwks_url_are_refreshed_and_kept_through_an_outage() {
    let first = Idp::new("url-key-1");
    let second = Idp::new("url-key-2");
    let jwks = |idp: &Idp| format!("{{\"keys\": [{}]}}", idp.public_jwk);
    let server = JwksServer::start(jwks(&first)).await;
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let auth = format!(
        "auth:\n  jwt_issuers:\n    - issuer: '{ISSUER}'\n      audience: tollgate\n      algorithms: [ES256]\n      jwks_url: 'http://{}/.well-known/jwks.json'\n      refresh: 1s\n",
        server.addr
    );
    let gateway = Gateway::spawn_in(dir.path(), &format!("{}{auth}", mock_route(&mock)), "").await;
    let (status, _) = gateway
        .admin("POST", "/api/users", Some(json!({ "email": "kim@example.com", "password": "long-enough-password", "role": "member" })))
        .await;
    assert_eq!(status, 201);
    let claims = json!({ "email": "kim@example.com" });
    let (old, new) = (first.token(claims.clone()), second.token(claims));
    assert_eq!(chat(&gateway, &old).await.0, 200);
    assert_eq!(chat(&gateway, &new).await.0, 401);

    // The issuer rotates its key: the next refresh picks it up and drops the old one.
    server.set(true, jwks(&second));
    status_within(&gateway, &new, 200).await;
    assert_eq!(chat(&gateway, &old).await.0, 401);

    // While the endpoint fails, the keys last fetched stay in use.
    server.set(false, String::new());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(chat(&gateway, &new).await.0, 200);
}

/// A config reload adds (and removes) a trusted issuer without a restart.
#[tokio::test]
async fn a_reload_adds_and_removes_an_issuer() {
    let idp = Idp::new("key-r");
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_in(dir.path(), &mock_route(&mock), "").await;
    let (status, _) = gateway
        .admin("POST", "/api/users", Some(json!({ "email": "kim@example.com", "password": "long-enough-password", "role": "member" })))
        .await;
    assert_eq!(status, 201);
    let token = idp.token(json!({ "email": "kim@example.com" }));
    assert_eq!(chat(&gateway, &token).await.0, 401);

    let auth = format!(
        "auth:\n  jwt_issuers:\n    - issuer: '{ISSUER}'\n      audience: tollgate\n      algorithms: [ES256]\n      jwks: ['{}']\n",
        idp.public_jwk
    );
    Gateway::write_config(dir.path(), &format!("{}{auth}", mock_route(&mock)), "");
    status_within(&gateway, &token, 200).await;

    Gateway::write_config(dir.path(), &mock_route(&mock), "");
    status_within(&gateway, &token, 401).await;
}
