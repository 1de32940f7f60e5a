//! A minimal blocking HTTP/1.1 client for the harness's own checks (readiness, the one
//! verification request per target, mock counters). The load itself comes from oha or wrk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// A response read to the end of the connection (`Connection: close`).
pub struct Response {
    pub status: u16,
    /// The raw body; chunked framing is left in place, which is fine for `contains` checks.
    pub body: String,
}

impl Response {
    /// The first `max` characters of the body, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        self.body.chars().take(max).collect()
    }
}

pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    request(addr, "GET", path, &[], None)
}

pub fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Response> {
    request(addr, "POST", path, headers, Some(body))
}

pub fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Response> {
    request(addr, method, path, headers, Some(body))
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Response> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body.as_bytes())?;
    }
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response of {method} {path} from {addr}"))?;
    let raw = String::from_utf8_lossy(&raw);
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!(
            "{method} http://{addr}{path}: incomplete response ({} bytes)",
            raw.len()
        );
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| {
            format!(
                "{method} http://{addr}{path}: bad status line {:?}",
                head.lines().next()
            )
        })?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}
