//! The routing config: YAML in, a validated [`Config`] out. Every problem names the path
//! and line of the bad value, e.g.
//! `tollgate.yaml:14: models[2].deployments[0].provider: unknown provider "opnai"`.

pub mod cache;
mod expand;
mod locate;
pub mod raw;
pub mod units;
mod validate;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;

pub use cache::{CachePolicy, CacheScope, CacheSettings, HitCost};
pub use expand::expand_str;
pub use locate::LineIndex;
pub use raw::AccessLog;

/// A validated config: references resolved, defaults applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub quota: QuotaSettings,
    pub routing: RoutingSettings,
    pub jwt_issuers: Vec<JwtIssuer>,
    pub metering: MeteringSettings,
    pub log: LogSettings,
    pub usage: UsageSettings,
    pub cache: CacheSettings,
}

/// How long raw usage events are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSettings {
    /// `None`: for ever.
    pub retention: Option<Duration>,
}

/// PEM files of a listener certificate (relative paths from the working directory, as
/// `data_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the gateway writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `None`: decided by whether stderr is a terminal.
    pub format: Option<LogFormat>,
    pub access: AccessLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// How usage is metered at the edges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeteringSettings {
    /// When a client leaves mid-request, how long to go on reading the upstream to its
    /// final usage (`metering.on_client_abort: drain`); `None`: close it at once.
    pub drain: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Team,
}

/// A trusted JWT issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtIssuer {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<String>,
    /// JWK JSON objects given inline.
    pub jwks: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<Url>,
    pub refresh: Duration,
    pub leeway: Duration,
    pub claim: String,
    pub subject: SubjectKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone)]
pub struct QuotaSettings {
    pub on_store_error: OnStoreError,
    pub default_max_tokens: u64,
    pub slot_lease: Duration,
    /// Lease slices of large request and token limits (with Redis).
    pub leases: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub proxy_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub data_dir: PathBuf,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    /// Origins allowed to call the admin API from a browser (CORS).
    pub admin_cors_origins: Vec<String>,
    /// TLS for the proxy and admin listeners (certificate chain, key).
    pub tls: Option<TlsFiles>,
    pub admin_token_ttl: Duration,
    pub key_rotation_grace: Duration,
    pub admin_login_attempts: u32,
    pub connections: ConnectionSettings,
}

/// Deadlines and caps on client connections, for both the proxy and admin listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    AzureOpenAi,
    Mock,
    Anthropic,
    AnthropicMock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::AzureOpenAi => "azure-openai",
            ProviderKind::Mock => "mock",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::AnthropicMock => "anthropic-mock",
        }
    }

    /// Speaks Anthropic's Messages API.
    pub fn speaks_anthropic(self) -> bool {
        matches!(self, ProviderKind::Anthropic | ProviderKind::AnthropicMock)
    }

    /// The bundled mock, started in-process by the gateway.
    pub fn in_process(self) -> bool {
        matches!(self, ProviderKind::Mock | ProviderKind::AnthropicMock)
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// `None` only for `mock`, whose address is known once it listens.
    pub base_url: Option<Url>,
    pub api_key: Option<Secret>,
    /// A stored provider credential to use as `api_key`, resolved at start-up.
    pub credential: Option<String>,
    pub api_version: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
    /// Set for kind `anthropic` only.
    pub anthropic: Option<AnthropicOptions>,
}

/// How an `anthropic` provider is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicOptions {
    /// The `anthropic-version` header.
    pub version: String,
    /// `max_tokens` for a chat completion that sets none.
    pub max_tokens: u64,
    /// Drop parameters Anthropic cannot take rather than refuse the request.
    pub drop_unsupported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(600),
            idle: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub aliases: Vec<String>,
    pub deployments: Vec<Deployment>,
    pub pricing: Option<Pricing>,
    pub owned_by: String,
    /// Further attempts after the first.
    pub retries: u32,
    pub strategy: Strategy,
    /// Models (canonical names) that take the request when this one's deployments failed.
    pub fallbacks: Vec<String>,
    pub cache: CachePolicy,
}

/// How a model's deployment is chosen for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    Weighted,
    LeastInflight,
    Latency,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastInflight => "least-inflight",
            Strategy::Latency => "latency",
        }
    }
}

/// Retries and cooldown shared by every model (a model may set its own `retries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    pub retries: u32,
    /// No attempt starts later than this after the request arrived.
    pub deadline: Duration,
    /// Upstream statuses retried on another deployment.
    pub retry_on: Vec<u16>,
    pub cooldown: CooldownSettings,
    pub health_check: Option<HealthCheckSettings>,
}

/// Active checks of cooled-down deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownSettings {
    /// Failures within `window` that cool a deployment down; 0: never.
    pub failures: u32,
    pub window: Duration,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub upstream_model: String,
    pub weight: u32,
    /// Limits protecting the upstream account (all clients together).
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl Pricing {
    /// The cost of a request in micro-USD, rounded up: a fraction of a micro-dollar is
    /// never given away.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> i64 {
        self.cost_cached(prompt_tokens, completion_tokens, 0, 0)
    }

    /// [`Pricing::cost`] with the prompt tokens read from and written to a prompt cache
    /// (part of `prompt_tokens`) at their own prices, the input price where none is set.
    pub fn cost_cached(
        &self,
        prompt_tokens: u64,
        completion_tokens: u64,
        cache_read: u64,
        cache_write: u64,
    ) -> i64 {
        let input = u128::from(self.input_micro_usd_per_million);
        let read = self
            .cache_read_micro_usd_per_million
            .map_or(input, u128::from);
        let write = self
            .cache_write_micro_usd_per_million
            .map_or(input, u128::from);
        let uncached = prompt_tokens
            .saturating_sub(cache_read)
            .saturating_sub(cache_write);
        let total = input * u128::from(uncached)
            + read * u128::from(cache_read.min(prompt_tokens))
            + write * u128::from(cache_write.min(prompt_tokens.saturating_sub(cache_read)))
            + u128::from(self.output_micro_usd_per_million) * u128::from(completion_tokens);
        i64::try_from(total.div_ceil(1_000_000)).unwrap_or(i64::MAX)
    }
}

/// Integer micro-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    pub input_micro_usd_per_million: u64,
    pub output_micro_usd_per_million: u64,
    /// Prompt tokens read from a prompt cache (Anthropic); the input price when `None`.
    pub cache_read_micro_usd_per_million: Option<u64>,
    /// Prompt tokens written to a prompt cache (Anthropic); the input price when `None`.
    pub cache_write_micro_usd_per_million: Option<u64>,
}

/// A credential: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One thing wrong with a config, located by path (and line when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a config file, each line `file:line: path: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match problem.line {
                Some(line) => write!(f, "{}:{line}: {problem}", self.origin)?,
                None => write!(f, "{}: {problem}", self.origin)?,
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, expands (`${VAR}` from the process environment) and validates a config file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            problems: vec![Problem::at("", format!("cannot read the config file: {e}"))],
        })?;
        Config::from_yaml(&text, &origin, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` answers `${VAR}` look-ups.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::load(text, env).map_err(|mut problems| {
            let index = LineIndex::build(text);
            for problem in &mut problems {
                if problem.line.is_none() {
                    problem.line = index.line_of(&problem.path);
                }
            }
            ConfigError {
                origin: origin.to_string(),
                problems,
            }
        })
    }

    /// The model (by name or alias) a client asked for.
    pub fn find_model(&self, name: &str) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.name == name || m.aliases.iter().any(|a| a == name))
    }
}

/// The JSON Schema of the config file, generated from [`raw::RawConfig`].
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(raw::RawConfig);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
