//! `tollgate`: run the gateway, validate a config, print the config's JSON Schema.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tollgate_core::config::{Config, LogFormat, json_schema};
use tollgate_proxy::{backend::database, cli, log_writer, metrics, server};

// Pingora allocates per request; mimalloc is markedly faster than glibc's malloc for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: an OpenAI-compatible LLM API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config FILE` (default `config/tollgate.yaml`, or `TOLLGATE_CONFIG`).
#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(
        long,
        short,
        default_value = "config/tollgate.yaml",
        env = "TOLLGATE_CONFIG"
    )]
    config: PathBuf,
}

/// As [`ConfigArg`], accepted after the subcommand too.
#[derive(clap::Args)]
struct GlobalConfigArg {
    /// The config file.
    #[arg(
        long,
        short,
        default_value = "config/tollgate.yaml",
        env = "TOLLGATE_CONFIG",
        global = true
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (proxy and metrics listeners).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a config file; exits non-zero naming every problem's path and line.
    CheckConfig { file: PathBuf },
    /// Apply pending database migrations (`TOLLGATE_DATABASE_URL`, else the SQLite file in
    /// the config's data directory).
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage admin-API users.
    Users {
        #[command(flatten)]
        config: GlobalConfigArg,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage client API keys.
    Keys {
        #[command(flatten)]
        config: GlobalConfigArg,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run only the admin API (for deployments that scale it apart from the proxy).
    Admin {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// GET a plain-HTTP URL; exits 0 on a 2xx answer (container health checks, e.g.
    /// `tollgate probe http://127.0.0.1:9464/readyz`).
    Probe { url: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key; prints its secret once.
    Create {
        #[arg(long)]
        name: String,
        /// Owner, by email.
        #[arg(long)]
        user: Option<String>,
        /// Owning team id.
        #[arg(long)]
        team_id: Option<i64>,
        /// Allowed models, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[command(flatten)]
        limits: cli::keys::LimitArgs,
        /// Expiry from now, e.g. `30d` or `12h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys (never their secrets).
    List {
        /// Only keys of this user (email).
        #[arg(long)]
        user: Option<String>,
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id, `key_…`.
        id: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; prints a generated password once unless --password-stdin is given.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "member", value_parser = ["admin", "member", "viewer"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

fn main() -> ExitCode {
    // First: it sets environment variables, which is only sound with one thread.
    let roots = server::trust_store::read_roots_on_demand();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config: ConfigArg { config },
        } => {
            let _log_writer = init_logging(&config);
            tracing::info!("{roots}");
            match tollgate_proxy::server::serve(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { file } => match Config::from_file(&file) {
            Ok(config) => {
                println!(
                    "{}: ok ({} providers, {} models)",
                    file.display(),
                    config.providers.len(),
                    config.models.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Migrate {
            config: ConfigArg { config },
        } => match migrate(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Users {
            config: GlobalConfigArg { config },
            command,
        } => match users(&config, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Keys {
            config: GlobalConfigArg { config },
            command,
        } => report(keys(&config, command)),
        Command::Admin {
            config: ConfigArg { config },
        } => {
            let _log_writer = init_logging(&config);
            tracing::info!("{roots}");
            report(server::serve_admin(&config))
        }
        Command::Schema => {
            print!("{}", json_schema());
            ExitCode::SUCCESS
        }
        Command::Probe { url } => match cli::probe::probe(&url) {
            Ok(status) => {
                println!("{status}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate probe: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// Logs go to stderr through a background writer, so a request never waits on log I/O.
/// The guard flushes what is queued when the process ends.
fn init_logging(config: &std::path::Path) -> log_writer::Guard {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // These libraries print whole request heads or statements at debug and trace level —
    // client keys, provider credentials, password hashes — so they are held at info
    // whatever RUST_LOG says: secrets never reach the log.
    for quiet in [
        "pingora_core=info",
        "pingora_proxy=info",
        "hyper=info",
        "h2=info",
        "reqwest=info",
        "fred=info",
        "sea_orm=info",
        "sqlx=info",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    #[allow(clippy::expect_used)] // start-up: no thread, no logs
    let (writer, guard) =
        log_writer::start(std::io::stderr()).expect("starting the log writer thread");
    let access = writer.clone();
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || writer.clone());
    match log_format(config, terminal) {
        // One object per line, the event's fields at the top level; access lines are
        // written in the same shape by the gateway itself.
        LogFormat::Json => {
            metrics::access_log::write_json_to(access);
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .init()
        }
        // Colour only for a terminal.
        LogFormat::Pretty => fmt.with_ansi(terminal).init(),
    }
    guard
}

/// `TOLLGATE_LOG_FORMAT`, else the config's `log.format`, else pretty on a terminal and
/// JSON otherwise. A config that does not load is reported by the command itself.
fn log_format(config: &std::path::Path, terminal: bool) -> LogFormat {
    match std::env::var("TOLLGATE_LOG_FORMAT").as_deref() {
        Ok("json") => return LogFormat::Json,
        Ok("pretty") => return LogFormat::Pretty,
        _ => {}
    }
    Config::from_file(config)
        .ok()
        .and_then(|c| c.log.format)
        .unwrap_or(if terminal {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        })
}

/// Runs `work` against the migrated database of the config at `config`.
fn with_database<T>(
    config: &std::path::Path,
    work: impl AsyncFnOnce(
        &str,
        &sea_orm_migration::sea_orm::DatabaseConnection,
        Vec<String>,
    ) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let config = Config::from_file(config).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    database::with_migrated(&config.server.data_dir, work)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn keys(config: &std::path::Path, command: KeysCommand) -> anyhow::Result<()> {
    let data_dir = Config::from_file(config)
        .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?
        .server
        .data_dir;
    with_database(config, async |url, db, _| match command {
        KeysCommand::Create {
            name,
            user,
            team_id,
            models,
            limits,
            expires_in,
        } => {
            let secret = server::load_secret(&data_dir, url)?;
            let args = cli::keys::CreateArgs {
                name,
                user,
                team_id,
                models,
                limits,
                expires_in,
            };
            cli::keys::create(db, &secret, args).await
        }
        KeysCommand::List { user, all } => cli::keys::list(db, user, all).await,
        KeysCommand::Revoke { id } => cli::keys::revoke(db, &id).await,
    })
}

fn users(config: &std::path::Path, command: UsersCommand) -> anyhow::Result<()> {
    with_database(config, async |_, db, _| match command {
        UsersCommand::Create {
            email,
            role,
            password_stdin,
        } => {
            let role = role.parse().map_err(anyhow::Error::msg)?;
            cli::users::create(db, &email, role, password_stdin).await
        }
        UsersCommand::List => cli::users::list(db).await,
    })
}

fn migrate(config: &std::path::Path) -> anyhow::Result<()> {
    with_database(config, async |url, _, applied| {
        println!(
            "{}: {} migrations applied",
            database::redact(url),
            applied.len()
        );
        for name in applied {
            println!("  {name}");
        }
        Ok(())
    })
}
