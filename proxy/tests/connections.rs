//! Client connections with raw sockets: slow heads and bodies are cut off at their
//! deadlines (408 in OpenAI's shape) while other clients are served, idle keep-alive
//! connections are closed, connections beyond the cap get 503 at once, and malformed heads
//! and bodies get OpenAI error JSON with `x-request-id` — on the proxy and admin listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{Gateway, MASTER_KEY, Mock, chat_body, client, mock_route};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Short deadlines, so the tests do not wait long.
const SERVER: &str = "  header_timeout: 1s\n  body_timeout: 1s\n  keepalive_timeout: 1s\n";

/// What came back on a raw connection: the status (0 if none) and the whole text.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// An OpenAI error with a request id, of `status`.
    fn assert_error(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(self.header("x-request-id").is_some(), "{}", self.text);
        let body = self.json();
        assert!(body["error"]["message"].is_string(), "{}", self.text);
        assert!(body["error"]["type"].is_string(), "{}", self.text);
        body
    }
}

/// Reads until the server closes (or `within` passes).
async fn read_all(stream: &mut TcpStream, within: Duration) -> Answer {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Answer { status, text }
}

/// Sends `bytes` on a new connection and reads the answer.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(bytes).await;
    read_all(&mut stream, Duration::from_secs(10)).await
}

fn raise_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

async fn gateway(extra: &str) -> (Gateway, Mock) {
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_with_server(&mock_route(&mock), &format!("{SERVER}{extra}")).await;
    (gateway, mock)
}

async fn served(gateway: &Gateway) -> bool {
    let resp = gateway
        .post("/v1/chat/completions")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    resp.status() == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dribbling_heads_are_cut_off_while_others_are_served() {
    raise_file_limit();
    let (gateway, _mock) = gateway("").await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let stream = TcpStream::connect(gateway.addr).await.unwrap();
        let (mut read_half, mut write_half) = stream.into_split();
        // One byte of a header every 200 ms: never a whole head.
        let dribble = tokio::spawn(async move {
            let _ = write_half
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
                .await;
            for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
                .cycle()
            {
                if write_half.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        slow.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = read_half.read_to_end(&mut answer).await;
            dribble.abort();
            String::from_utf8_lossy(&answer).to_string()
        }));
    }
    // A normal client keeps being served meanwhile.
    for _ in 0..10 {
        assert!(served(&gateway).await);
    }
    for task in slow {
        let answer = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a slow connection was never closed")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    // All closed at their deadline (1 s), not after a per-read timeout.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(served(&gateway).await);
}

#[tokio::test]
async fn an_unfinished_body_gets_408() {
    let (gateway, _mock) = gateway("").await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":"
    );
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut stream, Duration::from_secs(10)).await;
    let body = answer.assert_error(408);
    assert_eq!(body["error"]["code"], "request_timeout");
    assert_eq!(answer.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    let (gateway, _mock) = gateway("").await;
    for addr in [gateway.addr, gateway.admin] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        // Kept alive, then idle: closed by the server within its keep-alive timeout.
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{addr}: an idle connection stayed open");
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_at_once() {
    let (gateway, _mock) = gateway("  max_connections: 20\n").await;
    for addr in [gateway.addr, gateway.admin] {
        let mut held = Vec::new();
        for _ in 0..20 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // Half a head: the connection stays open until its deadline.
            stream
                .write_all(b"GET /v1/models HTTP/1.1\r\n")
                .await
                .unwrap();
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = exchange(addr, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let body = answer.assert_error(503);
        assert_eq!(body["error"]["code"], "server_overloaded", "{addr}");
        assert_eq!(answer.header("retry-after"), Some("1"));
        drop(held);
    }
    // Once they are gone, new connections are served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(served(&gateway).await);
}

#[tokio::test]
async fn malformed_heads_get_openai_errors() {
    let (gateway, _mock) = gateway("").await;
    let huge = format!(
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(600 * 1024)
    );
    let fields: String = (0..300).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /v1/models HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    let cases: [(&[u8], u16, &str); 6] = [
        (huge.as_bytes(), 431, "max_header_size"),
        (many.as_bytes(), 431, "header fields"),
        (b"GET /v1/models\r\n\r\n", 400, "Malformed"),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            400,
            "Content-Length",
        ),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "Transfer-Encoding",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "Malformed"),
    ];
    for (request, status, says) in cases {
        let answer = exchange(gateway.addr, request).await;
        let body = answer.assert_error(status);
        assert_eq!(answer.header("x-should-retry"), Some("false"));
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(answer.header("server").is_none(), "{}", answer.text);
    }
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400() {
    let (gateway, _mock) = gateway("").await;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let answer = exchange(gateway.addr, request.as_bytes()).await;
    let body = answer.assert_error(400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chunked"),
        "{body}"
    );
    assert_eq!(answer.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn the_admin_listener_cuts_slow_heads_off_too() {
    let (gateway, _mock) = gateway("").await;
    let mut stream = TcpStream::connect(gateway.admin).await.unwrap();
    stream
        .write_all(b"GET /api/auth/me HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_all(&mut stream, Duration::from_secs(15)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{}",
        answer.text
    );
    if answer.status != 0 {
        answer.assert_error(408);
    }
    // An unfinished body gets 408 in the error shape.
    let mut stream = TcpStream::connect(gateway.admin).await.unwrap();
    let head = format!(
        "POST /api/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut stream, Duration::from_secs(10)).await;
    let body = answer.assert_error(408);
    assert_eq!(body["error"]["code"], "request_timeout");
    // A normal admin request is answered.
    let me = client()
        .get(format!("http://{}/api/auth/me", gateway.admin))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}
