//! Reads Redis's own per-command call counters (`INFO commandstats`) over a plain socket,
//! so the harness can report how many Redis commands a governed request costs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// `host:port` of a `redis://host:port[/db]` URL.
pub fn address(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("redis://")
        .with_context(|| format!("--redis-url must start with redis://, got {url}"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    Ok(if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:6379")
    })
}

/// Calls per command since Redis started, e.g. `evalsha → 1234`.
pub fn command_calls(addr: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .with_context(|| format!("connecting to Redis at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let Some(len) = header.trim_end().strip_prefix('$') else {
        bail!("Redis answered INFO with {header:?}");
    };
    let len: usize = len.parse().context("INFO reply length")?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(parse(&String::from_utf8_lossy(&body)))
}

/// `cmdstat_evalsha:calls=12,usec=…` lines → `evalsha → 12`.
fn parse(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// What ran between two readings; commands that did not run are left out.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(cmd, n)| {
            let d = n.saturating_sub(before.get(cmd).copied().unwrap_or(0));
            (d > 0).then(|| (cmd.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats_and_urls() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.5,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=1\r\n";
        let calls = parse(info);
        assert_eq!(calls.get("evalsha"), Some(&12));
        assert_eq!(calls.get("info"), Some(&3));
        let mut later = calls.clone();
        later.insert("evalsha".into(), 20);
        assert_eq!(
            delta(&calls, &later),
            BTreeMap::from([("evalsha".to_string(), 8)])
        );
        assert_eq!(
            address("redis://127.0.0.1:6379/0").unwrap(),
            "127.0.0.1:6379"
        );
        assert_eq!(address("redis://:pw@localhost").unwrap(), "localhost:6379");
        assert!(address("http://x").is_err());
    }
}
