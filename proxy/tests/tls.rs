//! `server.tls` on the proxy and admin listeners, with a self-signed certificate made here:
//! both answer over TLS (and not in plain text), a renewed certificate is used from the
//! next connection without a restart, and a broken renewal keeps the old one. Upstream TLS
//! is verified, also when the CA certificates are read from a hashed directory on demand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use common::{Gateway, MASTER_KEY, Mock, chat_body, mock_route};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tollgate_testkit::tls::self_signed;

/// Writes a self-signed certificate for 127.0.0.1 with `serial`, and its key; returns the PEM.
fn write_certificate(dir: &Path, serial: u32) -> Vec<u8> {
    let (cert, key) = self_signed("tollgate test", serial);
    let pem = cert.to_pem().unwrap();
    // The key first: the gateway checks the pair once the certificate changes.
    std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    pem
}

/// The serial of the certificate a TLS listener presents now.
fn presented_serial(addr: SocketAddr) -> u32 {
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    let stream = TcpStream::connect(addr).unwrap();
    let tls = connector
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("127.0.0.1", stream)
        .unwrap();
    let cert = tls.ssl().peer_certificate().unwrap();
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_dec_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn https(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_and_pick_up_a_renewed_certificate() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let pem = write_certificate(dir.path(), 1001);
    let tls = format!(
        "  tls: {{cert: '{}', key: '{}'}}\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let gw = Gateway::spawn_in(dir.path(), &mock_route(&mock), &tls).await;
    let client = https(&pem);
    let resp = client
        .post(format!("https://{}/v1/chat/completions", gw.addr))
        .bearer_auth(MASTER_KEY)
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stream = client
        .post(format!("https://{}/v1/chat/completions", gw.addr))
        .bearer_auth(MASTER_KEY)
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert!(stream.text().await.unwrap().contains("data: [DONE]"));
    let admin = client
        .get(format!("https://{}/api/auth/me", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);
    assert!(admin.headers().contains_key("content-security-policy"));
    // Plain HTTP gets no HTTP answer from either.
    for addr in [gw.addr, gw.admin] {
        let plain = common::client()
            .get(format!("http://{addr}/v1/models"))
            .send()
            .await;
        assert!(plain.is_err(), "{addr} answered plain HTTP");
    }

    // A renewed certificate in the same files is presented from the next connection on.
    let (proxy, admin) = (gw.addr, gw.admin);
    tokio::task::spawn_blocking(move || {
        assert_eq!(presented_serial(proxy), 1001);
        assert_eq!(presented_serial(admin), 1001);
    })
    .await
    .unwrap();
    // Distinct modification times from the first files on any file system.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = write_certificate(dir.path(), 1002);
    let deadline = Instant::now() + Duration::from_secs(10);
    tokio::task::spawn_blocking(move || {
        while presented_serial(proxy) != 1002 || presented_serial(admin) != 1002 {
            assert!(Instant::now() < deadline, "the renewal was not picked up");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let resp = https(&renewed)
        .post(format!("https://{}/v1/chat/completions", gw.addr))
        .bearer_auth(MASTER_KEY)
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A broken renewal (not PEM) changes nothing.
    std::fs::write(dir.path().join("cert.pem"), b"not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let serial = tokio::task::spawn_blocking(move || presented_serial(proxy))
        .await
        .unwrap();
    assert_eq!(serial, 1002);
}

#[tokio::test]
async fn a_missing_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = Gateway::write_config(
        dir.path(),
        "providers:\n  - {name: m, kind: mock}\nmodels:\n  - name: x\n    deployments: [{provider: m}]\n",
        "  tls: {cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem'}\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("TOLLGATE_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}

/// A directory holding `certs` under OpenSSL's hashed names.
fn hashed_dir(dir: &Path, certs: &[&openssl::x509::X509]) {
    std::fs::create_dir_all(dir).unwrap();
    for cert in certs {
        let name = format!("{:08x}.0", cert.subject_name_hash());
        std::fs::write(dir.join(name), cert.to_pem().unwrap()).unwrap();
    }
}

/// Upstream TLS through a gateway whose OpenSSL reads roots on demand: the bundle is traded
/// for the hashed directory only when the directory holds all of it; either way the upstream
/// is verified, and one that no root vouches for is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_with_roots_read_on_demand() {
    let mock = Mock::spawn();
    // The upstream: a gateway serving TLS in front of the mock.
    let up = tempfile::tempdir().unwrap();
    let tls = format!(
        "  tls: {{cert: '{}', key: '{}'}}\n",
        up.path().join("cert.pem").display(),
        up.path().join("key.pem").display()
    );
    let upstream_pem = write_certificate(up.path(), 7);
    let upstream_cert = openssl::x509::X509::from_pem(&upstream_pem).unwrap();
    let upstream = Gateway::spawn_in(up.path(), &mock_route(&mock), &tls).await;
    let route = format!(
        "providers:\n  - {{name: tls, kind: openai-compatible, base_url: 'https://{}/v1', api_key: '{MASTER_KEY}'}}\nmodels:\n  - name: gpt-4o-mini\n    deployments: [{{provider: tls}}]\n",
        upstream.addr
    );
    let other = self_signed("another root", 8).0;

    let roots = tempfile::tempdir().unwrap();
    let upstream_bundle = roots.path().join("upstream.pem");
    std::fs::write(&upstream_bundle, &upstream_pem).unwrap();
    let other_bundle = roots.path().join("other.pem");
    std::fs::write(&other_bundle, other.to_pem().unwrap()).unwrap();
    let with_upstream = roots.path().join("with-upstream");
    hashed_dir(&with_upstream, &[&upstream_cert, &other]);
    let with_other = roots.path().join("with-other");
    hashed_dir(&with_other, &[&other]);

    // (bundle, directory, roots read on demand, status of a request through the upstream)
    let cases = [
        // The directory holds the bundle: read on demand, and the upstream is trusted.
        (&upstream_bundle, &with_upstream, true, 200),
        // The directory misses the bundle's certificate: the bundle stays, and is used.
        (&upstream_bundle, &with_other, false, 200),
        // On demand, nothing vouches for the upstream: refused.
        (&other_bundle, &with_other, true, 502),
    ];
    for (i, (bundle, dir, on_demand, status)) in cases.into_iter().enumerate() {
        let gw_dir = tempfile::tempdir().unwrap();
        let log = gw_dir.path().join("gateway.log");
        let envs = [
            ("SSL_CERT_FILE", bundle.to_str().unwrap()),
            ("SSL_CERT_DIR", dir.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ];
        let gw = Gateway::spawn_logged(gw_dir.path(), &route, "", &envs, &log).await;
        let (got, body) = common::send_chat(
            common::client()
                .post(format!("http://{}/v1/chat/completions", gw.addr))
                .bearer_auth(MASTER_KEY),
        )
        .await;
        assert_eq!(got, status, "case {i}: {body}");
        if status == 200 {
            assert_eq!(body["object"], "chat.completion", "case {i}: {body}");
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        let read_on_demand = format!("read from {} when a handshake needs them", dir.display());
        assert_eq!(
            logged.contains(&read_on_demand),
            on_demand,
            "case {i}: {logged}"
        );
        if !on_demand {
            assert!(logged.contains("loaded whole"), "case {i}: {logged}");
        }
    }
}
