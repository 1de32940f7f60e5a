//! `tollgate probe URL`: a plain-HTTP GET that succeeds on a 2xx answer, for container
//! health checks (the runtime image has no curl).

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{Context, bail};

const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `GET url` and returns the status if it is 2xx.
pub fn probe(url: &str) -> anyhow::Result<u16> {
    let url = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if url.scheme() != "http" {
        bail!("only http:// URLs can be probed");
    }
    let host = url.host_str().context("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{host} does not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))?;
    if !(200..300).contains(&status) {
        bail!("{url} answered {status}");
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_it_cannot_probe() {
        assert!(probe("not a url").is_err());
        assert!(probe("https://127.0.0.1:1/").is_err());
        // Nothing listens on port 1.
        assert!(probe("http://127.0.0.1:1/readyz").is_err());
    }
}
