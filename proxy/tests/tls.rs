//! `server.tls` on the proxy and admin listeners, with a self-signed certificate made here:
//! both answer over TLS (and not in plain text), a renewed certificate is used from the
//! next connection without a restart, and a broken renewal keeps the old one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use common::{Gateway, MASTER_KEY, Mock, chat_body, mock_route};
use openssl::{
    asn1::{Asn1Integer, Asn1Time},
    bn::BigNum,
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::PKey,
    ssl::{SslConnector, SslMethod, SslVerifyMode},
    x509::{X509, X509NameBuilder, extension::SubjectAlternativeName},
};

/// Writes a self-signed certificate for 127.0.0.1 with `serial`, and its key; returns the PEM.
fn write_certificate(dir: &Path, serial: u32) -> Vec<u8> {
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "tollgate test").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let pem = cert.build().to_pem().unwrap();
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
