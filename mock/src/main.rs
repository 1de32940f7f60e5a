//! The `tollgate-mock` binary: binds, prints `{"listening":"ADDR"}` on stdout, then serves
//! until killed. Logs go to stderr (warnings only unless RUST_LOG says otherwise).

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use tollgate_mock::{MockOptions, MockServer};
use tracing_subscriber::EnvFilter;

/// An OpenAI-compatible mock upstream with per-request behaviour directives.
#[derive(Parser)]
#[command(name = "tollgate-mock", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Require this key (`Authorization: Bearer K` or `api-key: K`) on API requests.
    #[arg(long, env = "TOLLGATE_MOCK_API_KEY")]
    api_key: Option<String>,
    /// Completion tokens per answer unless the request asks for fewer.
    #[arg(long, default_value_t = 16)]
    default_tokens: u32,
    /// Do not keep the last 64 requests for GET /_mock/requests (for benchmarks).
    #[arg(long)]
    no_record: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let opts = MockOptions {
        api_key: args.api_key,
        default_completion_tokens: args.default_tokens,
    };
    let server = MockServer::spawn(listener, opts)?;
    server.set_recording(!args.no_record);

    let line = serde_json::json!({ "listening": server.local_addr().to_string() });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);

    std::future::pending::<()>().await;
    Ok(())
}
