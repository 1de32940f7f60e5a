//! Reads Redis's own per-command call counters (`INFO commandstats`) over a plain socket,
//! so the harness can report how many Redis commands a governed request costs, and times
//! bare round trips to Redis beside a governed run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where a Redis is and how to log in to it, from a
/// `redis://[user:password@]host[:port][/db]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host_port: String,
    auth: Option<(String, String)>,
}

impl RedisAddr {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("redis://")
            .with_context(|| format!("--redis-url must start with redis://, got {url}"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let (auth, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
                (Some((user.to_string(), password.to_string())), host)
            }
            None => (None, authority),
        };
        // A port follows the last colon, unless that colon is inside an IPv6 `[…]`.
        let has_port = host_port
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'));
        Ok(RedisAddr {
            host_port: if has_port {
                host_port.to_string()
            } else {
                format!("{host_port}:6379")
            },
            auth,
        })
    }
}

/// A logged-in connection to Redis, and a reader over it.
fn connect(addr: &RedisAddr) -> anyhow::Result<(TcpStream, BufReader<TcpStream>)> {
    let sock = addr
        .host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{} resolves to nothing", addr.host_port))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .with_context(|| format!("connecting to Redis at {}", addr.host_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    if let Some((user, password)) = &addr.auth {
        let mut args = vec!["AUTH"];
        if !user.is_empty() {
            args.push(user);
        }
        args.push(password);
        stream.write_all(&command(&args))?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !line.starts_with('+') {
            bail!("Redis refused AUTH: {}", line.trim_end());
        }
    }
    Ok((stream, reader))
}

/// Calls per command since Redis started, e.g. `evalsha → 1234`.
pub fn command_calls(addr: &RedisAddr) -> anyhow::Result<BTreeMap<String, u64>> {
    let (mut stream, mut reader) = connect(addr)?;
    stream.write_all(&command(&["INFO", "commandstats"]))?;
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let Some(len) = header.trim_end().strip_prefix('$') else {
        bail!("Redis answered INFO with {}", header.trim_end());
    };
    let len: usize = len.parse().context("INFO reply length")?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(parse(&String::from_utf8_lossy(&body)))
}

/// Bare round trips to Redis (`PING` on a plain socket), timed at a steady pace beside a
/// governed run: what any check made in Redis pays at least on this host under this load,
/// so the governed figures can be read against it.
pub struct RoundTrips {
    stop: Arc<AtomicBool>,
    probe: JoinHandle<anyhow::Result<Vec<Duration>>>,
}

impl RoundTrips {
    /// Starts timing one `PING` every `every`.
    pub fn start(addr: &RedisAddr, every: Duration) -> anyhow::Result<Self> {
        let (mut stream, mut reader) = connect(addr)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let ping = command(&["PING"]);
        let probe = std::thread::spawn(move || {
            let mut times = Vec::new();
            let mut line = String::new();
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let started = Instant::now();
                stream.write_all(&ping)?;
                line.clear();
                reader.read_line(&mut line)?;
                times.push(started.elapsed());
                if line.trim_end() != "+PONG" {
                    bail!("Redis answered PING with {}", line.trim_end());
                }
            }
            Ok(times)
        });
        Ok(RoundTrips { stop, probe })
    }

    /// Stops and answers the median round trip in ms (`None` if none was timed).
    pub fn finish(self) -> anyhow::Result<Option<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut times = self
            .probe
            .join()
            .map_err(|_| anyhow::anyhow!("the Redis round-trip probe panicked"))??;
        times.sort();
        Ok(times.get(times.len() / 2).map(|t| t.as_secs_f64() * 1000.0))
    }
}

/// A command in RESP, Redis's wire format.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out.into_bytes()
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
    fn parses_commandstats() {
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
        assert_eq!(command(&["INFO", "x"]), b"*2\r\n$4\r\nINFO\r\n$1\r\nx\r\n");
    }

    #[test]
    fn parses_urls() {
        let addr = RedisAddr::parse("redis://127.0.0.1:6379/0?x=1").unwrap();
        assert_eq!(
            (addr.host_port.as_str(), addr.auth),
            ("127.0.0.1:6379", None)
        );
        let addr = RedisAddr::parse("redis://:pw@localhost").unwrap();
        assert_eq!(addr.host_port, "localhost:6379");
        assert_eq!(addr.auth, Some((String::new(), "pw".to_string())));
        let addr = RedisAddr::parse("redis://me:pw@[::1]").unwrap();
        assert_eq!(addr.host_port, "[::1]:6379");
        assert_eq!(addr.auth, Some(("me".to_string(), "pw".to_string())));
        assert_eq!(
            RedisAddr::parse("redis://[::1]:7000").unwrap().host_port,
            "[::1]:7000"
        );
        assert!(RedisAddr::parse("http://x").is_err());
    }
}
