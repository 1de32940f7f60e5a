//! `tollgate-pingora-floor`: the floor of the stack Tollgate is built on, for the load
//! harness. A bare Pingora `ProxyHttp` doing the least a key-swapping gateway must do: check
//! the client's key against one static key, swap in the upstream's key, and send every
//! request to one fixed peer. Same Pingora version and features, same allocator, and the
//! same (empty) downstream modules as the gateway, so the difference between the two is
//! Tollgate's own work.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::{
    http::{RequestHeader, ResponseHeader},
    modules::http::HttpModules,
    prelude::Opt,
    proxy::{ProxyHttp, Session},
    server::{Server, configuration::ServerConf},
    upstreams::peer::HttpPeer,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tollgate-pingora-floor", version)]
struct Args {
    /// Where to listen; port 0 picks a free one (printed as JSON on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The one upstream every request goes to (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// The key clients must send as `authorization: Bearer …`.
    #[arg(long)]
    key: String,
    /// The key sent upstream instead.
    #[arg(long, default_value = "floor-upstream-key")]
    upstream_key: String,
    /// Worker threads (Tollgate's `server.threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Floor {
    upstream: SocketAddr,
    /// `Bearer <key>`, compared with the request's header as it arrives.
    expected: Vec<u8>,
    upstream_auth: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        let ok = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == self.expected.as_slice());
        if ok {
            return Ok(false);
        }
        let body = br#"{"error":{"message":"invalid key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let mut resp = ResponseHeader::build(401, Some(2))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(bytes::Bytes::from_static(body)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        upstream_request.insert_header(http::header::AUTHORIZATION, &self.upstream_auth)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Pingora binds the listener from an address: for port 0, a free port is picked first
    // by a socket that stays bound (not listening, sharing the address as Pingora's does)
    // so that no other process is handed the port before Pingora binds it.
    let held = if args.listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    held.set_reuseaddr(true)?;
    held.bind(args.listen)?;
    let addr = held.local_addr()?;
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let floor = Floor {
        upstream: args.upstream,
        expected: format!("Bearer {}", args.key).into_bytes(),
        upstream_auth: format!("Bearer {}", args.upstream_key),
    };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, floor);
    proxy.add_tcp(&addr.to_string());
    server.add_service(proxy);
    println!("{}", serde_json::json!({ "listening": addr }));
    server.run_forever();
}
