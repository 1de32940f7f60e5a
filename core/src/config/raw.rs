//! The config file as written: serde types that mirror the YAML one to one. They are
//! checked and turned into [`super::Config`] by `validate`; the JSON Schema comes from here.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    cache::{RawCache, RawCachePolicy},
    units::{ByteSize, DurationText, Price},
};

/// Tollgate's routing config.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Tollgate config")]
pub struct RawConfig {
    /// Listeners and process settings.
    #[serde(default)]
    pub server: RawServer,
    /// Upstream LLM APIs that models are routed to.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Models clients may ask for, each served by one or more deployments.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// How key quotas (requests, tokens, concurrency, budgets) are enforced.
    #[serde(default)]
    pub quota: RawQuota,
    /// Retries, fallbacks and cooldown of failing deployments (defaults for every model).
    #[serde(default)]
    pub routing: RawRouting,
    /// Client authentication besides API keys.
    #[serde(default)]
    pub auth: RawAuth,
    /// How usage is metered at the edges.
    #[serde(default)]
    pub metering: RawMetering,
    /// How the gateway writes its log.
    #[serde(default)]
    pub log: RawLog,
    /// How long raw usage events are kept.
    #[serde(default)]
    pub usage: RawUsage,
    /// The response cache: where entries live, and the default policy.
    #[serde(default)]
    pub cache: RawCache,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Raw usage events older than this (e.g. `90d`) are deleted, in small batches, once
    /// their day is in the daily rollup; reports and budgets read whole days from the
    /// rollup. Default: kept for ever.
    pub retention: Option<DurationText>,
}

/// A certificate and its key, PEM files.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain (leaf first), PEM.
    pub cert: String,
    /// The private key, PEM.
    pub key: String,
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawLogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Pretty,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `json` or `pretty` (default: pretty when stderr is a terminal, JSON otherwise).
    /// `TOLLGATE_LOG_FORMAT` overrides it.
    pub format: Option<RawLogFormat>,
    /// Which requests get an access-log line: `all` (default), `errors` (a status of 400 or
    /// more, no response, or a failure after the answer began) or `off`. `RUST_LOG` filters the `tollgate::access` target too.
    pub access: Option<AccessLog>,
}

/// Which requests get an access-log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Every request.
    #[default]
    All,
    /// Requests answered with a status of 400 or more, not answered, or that failed after
    /// their answer began (a stream cut off).
    Errors,
    /// None.
    Off,
}

impl AccessLog {
    /// Whether a request that ended with `status` (0: no response), `failed` or not, gets
    /// a line.
    pub fn logs(self, status: u16, failed: bool) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Errors => failed || status == 0 || status >= 400,
            AccessLog::Off => false,
        }
    }
}

/// What happens to the upstream when a client leaves in the middle of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOnClientAbort {
    /// Close the upstream at once; billed for what had been read (a lower bound).
    Cancel,
    /// Keep reading the upstream to its end (for up to `drain_timeout`) without sending it
    /// anywhere, so the bill is the upstream's own final usage.
    Drain,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetering {
    /// `cancel` (default) or `drain`.
    pub on_client_abort: Option<RawOnClientAbort>,
    /// How long `drain` goes on reading after the client left (default `60s`).
    pub drain_timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Identity providers whose JWTs clients may send instead of an API key.
    #[serde(default)]
    pub jwt_issuers: Vec<RawJwtIssuer>,
}

/// Whom a JWT's subject claim names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawSubjectKind {
    /// A user, by email: the request counts against that user's limits.
    User,
    /// A team, by name: the request counts against that team's limits.
    Team,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    /// The `iss` the tokens carry, exactly.
    pub issuer: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// Accepted signature algorithms (default `[RS256, ES256]`); `none` is never accepted.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Verification keys as JWK JSON objects, e.g. `${JWT_PUBLIC_JWK}`.
    #[serde(default)]
    pub jwks: Vec<String>,
    /// A JWKS document (`{"keys": [...]}`) on disk, read again every `refresh`.
    pub jwks_file: Option<String>,
    /// A JWKS URL, fetched again every `refresh`.
    pub jwks_url: Option<String>,
    /// How often `jwks_file` / `jwks_url` are read again (default `10m`).
    pub refresh: Option<DurationText>,
    /// Clock skew tolerated for `exp` and `nbf` (default `30s`).
    pub leeway: Option<DurationText>,
    /// The claim naming the user or team (default `email` for users, `team` for teams).
    pub claim: Option<String>,
    /// What the claim names: `user` (by email, default) or `team` (by name).
    pub subject: Option<RawSubjectKind>,
}

/// What to do when the quota store (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOnStoreError {
    /// Keep serving, limited per process, and reconcile spend once Redis is back.
    FailOpen,
    /// Refuse requests of keys with limits (503) until Redis is back.
    FailClosed,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// `fail_open` (default) or `fail_closed`.
    pub on_store_error: Option<RawOnStoreError>,
    /// Completion tokens reserved for a request that sets no `max_tokens` (default 4096).
    pub default_max_tokens: Option<u64>,
    /// How long a concurrency slot is held if its request never finishes, e.g. after a
    /// crash (default `10m`).
    pub slot_lease: Option<DurationText>,
    /// With Redis: each replica leases slices of large request and token limits (at least
    /// 50 requests a minute per replica) and admits from them without a Redis round trip;
    /// the fleet still never admits more than a limit (default `true`).
    pub leases: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Further attempts after the first, on other deployments, when an attempt fails before
    /// anything reached the client (default 2).
    pub retries: Option<u32>,
    /// No attempt starts later than this after the request arrived (default `60s`).
    pub deadline: Option<DurationText>,
    /// Upstream statuses that are retried on another deployment (default
    /// `[429, 500, 502, 503, 504, 529]`: 529 is Anthropic's overloaded); 400, 401, 403, 404, 413 and 422 never are.
    pub retry_on: Option<Vec<u16>>,
    /// When a deployment is taken out of rotation for a while.
    #[serde(default)]
    pub cooldown: RawCooldown,
    /// Active checks of cooled-down deployments (`GET {base_url}/models`), which bring one
    /// back as soon as it answers, without risking a client's request. Off when absent.
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// How often each cooled-down deployment is checked (default `10s`).
    pub interval: Option<DurationText>,
    /// How long a check may take (default `5s`).
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCooldown {
    /// Failures (connect errors, timeouts, retried statuses) within `window` that cool a
    /// deployment down (default 5; 0 turns cooldown off).
    pub failures: Option<u32>,
    /// The window failures are counted in (default `30s`).
    pub window: Option<DurationText>,
    /// How long a cooled-down deployment gets no traffic before one probe request is let
    /// through (default `30s`; an upstream `retry-after` counts instead when given).
    pub duration: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the OpenAI-compatible proxy listener (default `0.0.0.0:8080`).
    pub proxy_listen: Option<String>,
    /// Address reserved for the admin API listener (default `0.0.0.0:8081`).
    pub admin_listen: Option<String>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` listener (default `0.0.0.0:9464`).
    pub metrics_listen: Option<String>,
    /// Worker threads of the proxy (default: the number of CPUs).
    pub threads: Option<usize>,
    /// Largest accepted request body, e.g. `8MiB` (default) or a number of bytes.
    pub max_body_size: Option<ByteSize>,
    /// Directory for generated local state such as the dev master key (default `.tollgate`).
    pub data_dir: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests (default `10s`); it ends
    /// sooner once none is in flight.
    pub shutdown_grace: Option<DurationText>,
    /// After SIGTERM, how long `/readyz` fails while requests are still served, so a load
    /// balancer stops sending before new requests are refused (default `0s`; set it to
    /// your load balancer's health-check interval times its failure threshold).
    pub drain_delay: Option<DurationText>,
    /// Lifetime of an admin session token from `POST /api/auth/login` (default `1h`).
    pub admin_token_ttl: Option<DurationText>,
    /// TLS for the proxy and admin listeners; the files are read again when they change.
    pub tls: Option<RawTls>,
    /// Browser origins (e.g. `https://admin.example.com`) allowed to call the admin API
    /// from another origin (CORS); none by default.
    #[serde(default)]
    pub admin_cors_origins: Vec<String>,
    /// How long a rotated API key's old secret keeps working unless the rotation says
    /// otherwise (default `24h`).
    pub key_rotation_grace: Option<DurationText>,
    /// Failed admin logins allowed per client address and per account each minute before
    /// logins are refused with 429 until the minute ends (default 10).
    pub admin_login_attempts: Option<u32>,
    /// How long a client has to send a request's headers, from the connection's start or a
    /// kept-alive request's first byte (default `10s`); later, 408.
    pub header_timeout: Option<DurationText>,
    /// How long a client has to send a request's body once its headers arrived (default
    /// `30s`); later, 408.
    pub body_timeout: Option<DurationText>,
    /// How long a connection may idle between requests before it is closed (default `60s`).
    pub keepalive_timeout: Option<DurationText>,
    /// Open connections accepted per listener (proxy, admin); beyond, 503 at once (default
    /// 10000, and at most half the process's file-descriptor limit).
    pub max_connections: Option<usize>,
    /// Largest request head (request line and headers), e.g. `64KiB` (default); larger, 431.
    pub max_header_size: Option<ByteSize>,
}

/// The protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawProviderKind {
    /// api.openai.com: `Authorization: Bearer`, paths under the base URL.
    Openai,
    /// Any server that speaks OpenAI's API (vLLM, Ollama, LM Studio, ...).
    OpenaiCompatible,
    /// Azure OpenAI: `api-key` header, `/openai/deployments/{model}/...?api-version=`.
    AzureOpenai,
    /// The bundled mock upstream, started in-process on loopback: works offline.
    Mock,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`): chat completions are
    /// translated to it and back.
    Anthropic,
    /// The bundled mock upstream in its Anthropic mode, started in-process: an offline
    /// stand-in for `anthropic`.
    AnthropicMock,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name that deployments refer to.
    pub name: String,
    pub kind: RawProviderKind,
    /// Base URL including the version prefix, e.g. `https://api.openai.com/v1`; for Azure the
    /// resource endpoint, e.g. `https://my-resource.openai.azure.com`. Not used by `mock`.
    pub base_url: Option<String>,
    /// The provider credential injected into upstream requests, usually `${ENV_VAR}`.
    pub api_key: Option<String>,
    /// Instead of `api_key`: the name of a provider credential stored (encrypted) through
    /// the admin API; the gateway decrypts it at start-up.
    pub credential: Option<String>,
    /// Azure OpenAI `api-version` query parameter (required for `azure-openai`).
    pub api_version: Option<String>,
    /// Extra headers sent with every upstream request (e.g. `anthropic-beta`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// `anthropic`: the `anthropic-version` header (default `2023-06-01`).
    pub anthropic_version: Option<String>,
    /// `anthropic`: `max_tokens` for chat completions that set none (Anthropic requires
    /// one; default 4096).
    pub max_tokens: Option<u64>,
    /// `anthropic`: drop chat-completion parameters Anthropic cannot take (`seed`,
    /// penalties, `logprobs`, ...) instead of refusing the request with a 400 naming them
    /// (default `false`).
    pub drop_unsupported_params: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP + TLS connect timeout (default `10s`).
    pub connect: Option<DurationText>,
    /// Longest wait for a non-streaming answer to start (default `600s`).
    pub first_byte: Option<DurationText>,
    /// Longest silence on a streaming answer, the first event included (default `120s`).
    pub idle: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The name clients send as `model`.
    pub name: String,
    /// Other names clients may use for this model.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where requests for this model go; picked by weight, the others are fallbacks.
    pub deployments: Vec<RawDeployment>,
    pub pricing: Option<RawPricing>,
    /// `owned_by` in `GET /v1/models` (default: the first deployment's provider).
    pub owned_by: Option<String>,
    /// Further attempts for this model (default: `routing.retries`).
    pub retries: Option<u32>,
    /// How the deployment of each request is chosen (default `weighted`).
    pub strategy: Option<RawStrategy>,
    /// Other models (names or aliases) that take the request, in order, when every
    /// deployment of this one failed before answering.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// This model's cache policy, field by field over `cache.default`.
    pub cache: Option<RawCachePolicy>,
}

/// How a model's deployment is chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawStrategy {
    /// At random, in proportion to `weight`.
    Weighted,
    /// The one with the fewest requests in flight on this replica.
    LeastInflight,
    /// The faster of two picked at random (moving average of time to first byte), with an
    /// occasional random pick so a slow deployment is still measured.
    Latency,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// Name of a provider above.
    pub provider: String,
    /// Model name sent upstream (the Azure deployment name); default: the model's name.
    pub model: Option<String>,
    /// Relative share of traffic (default 1).
    pub weight: Option<u32>,
    /// Requests per minute this deployment may receive through the gateway (all clients
    /// together), to stay within the upstream account's limits.
    pub rpm: Option<u64>,
    /// Tokens per minute, likewise.
    pub tpm: Option<u64>,
}

/// Prices in USD per million tokens, e.g. `0.15`; stored as integer micro-USD.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    pub input_per_million: Price,
    pub output_per_million: Price,
    /// USD per million prompt tokens read from Anthropic's prompt cache (default: the
    /// input price).
    pub cache_read_per_million: Option<Price>,
    /// USD per million prompt tokens written to Anthropic's prompt cache (default: the
    /// input price).
    pub cache_write_per_million: Option<Price>,
}
