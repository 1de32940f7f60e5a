//! `tollgate`: run the gateway, validate a config, print the config's JSON Schema.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tollgate_core::config::{Config, json_schema};

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

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (proxy and metrics listeners).
    Serve {
        /// The routing config.
        #[arg(
            long,
            short,
            default_value = "config/tollgate.yaml",
            env = "TOLLGATE_CONFIG"
        )]
        config: PathBuf,
    },
    /// Validate a config file; exits non-zero naming every problem's path and line.
    CheckConfig { file: PathBuf },
    /// Print the JSON Schema of the config file.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_logging();
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
        Command::Schema => {
            print!("{}", json_schema());
            ExitCode::SUCCESS
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
