//! Turns the raw YAML types into a [`Config`]: resolves provider references, applies
//! defaults and collects every problem instead of stopping at the first.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;
use yaml_serde::Value;

use super::{
    AnthropicOptions, Config, ConnectionSettings, CooldownSettings, Deployment,
    HealthCheckSettings, JwtIssuer, LogFormat, LogSettings, MeteringSettings, Model, OnStoreError,
    Pricing, Problem, Provider, ProviderKind, QuotaSettings, RoutingSettings, Secret,
    ServerSettings, Strategy, SubjectKind, Timeouts, TlsFiles, UsageSettings,
    raw::{
        RawConfig, RawJwtIssuer, RawLogFormat, RawMetering, RawModel, RawOnClientAbort,
        RawOnStoreError, RawProvider, RawProviderKind, RawQuota, RawRouting, RawServer,
        RawStrategy, RawSubjectKind,
    },
    units::DurationText,
};

const DEFAULT_MAX_BODY: u64 = 8 << 20;
/// The router tracks tried deployments in a 64-bit set.
const MAX_DEPLOYMENTS: usize = 64;

/// Headers the gateway sets itself; a provider may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "accept-encoding",
    "content-type",
    "expect",
    "x-request-id",
    "authorization",
    "api-key",
    "x-api-key",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
    let mut value: Value = yaml_serde::from_str(text).map_err(|e| {
        vec![Problem {
            path: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("invalid YAML: {e}"),
        }]
    })?;
    if value.is_null() {
        value = Value::Mapping(Default::default());
    }
    let problems = super::expand::expand_env(&mut value, env);
    if !problems.is_empty() {
        return Err(problems);
    }
    let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        vec![Problem::at(path, e.inner().to_string())]
    })?;
    let mut problems = Vec::new();
    let config = build(raw, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn build(raw: RawConfig, problems: &mut Vec<Problem>) -> Config {
    let server = server(&raw.server, problems);
    let providers: Vec<Provider> = raw
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| provider(p, &format!("providers[{i}]"), problems))
        .collect();

    let mut provider_index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in raw.providers.iter().enumerate() {
        if let Some(first) = provider_index.insert(&p.name, i) {
            problems.push(Problem::at(
                format!("providers[{i}].name"),
                format!(
                    "duplicate provider name {:?} (also providers[{first}])",
                    p.name
                ),
            ));
            provider_index.insert(&p.name, first);
        }
    }

    let routing = routing(&raw.routing, problems);
    let cache_default = super::cache::policy(
        &raw.cache.default,
        &super::CachePolicy::default(),
        "cache.default",
        problems,
    );
    if raw.models.is_empty() {
        problems.push(Problem::at("models", "at least one model is required"));
    }
    let mut model_names: HashMap<&str, String> = HashMap::new();
    let mut models = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("models[{i}]");
        let names = std::iter::once((format!("{path}.name"), &m.name)).chain(
            m.aliases
                .iter()
                .enumerate()
                .map(|(j, a)| (format!("{path}.aliases[{j}]"), a)),
        );
        for (name_path, name) in names {
            if let Err(message) = check_model_name(name) {
                problems.push(Problem::at(name_path, message));
            } else if let Some(first) = model_names.get(name.as_str()) {
                problems.push(Problem::at(
                    name_path.clone(),
                    format!("duplicate model name {name:?} (also {first})"),
                ));
            } else {
                model_names.insert(name, name_path);
            }
        }
        models.push(model(
            m,
            &path,
            &raw.providers,
            &provider_index,
            &routing,
            problems,
        ));
        if let (Some(own), Some(last)) = (&m.cache, models.last_mut()) {
            last.cache =
                super::cache::policy(own, &cache_default, &format!("{path}.cache"), problems);
        } else if let Some(last) = models.last_mut() {
            last.cache = cache_default.clone();
        }
    }

    resolve_fallbacks(&mut models, problems);
    let quota = quota(&raw.quota, problems);
    let jwt_issuers = raw
        .auth
        .jwt_issuers
        .iter()
        .enumerate()
        .map(|(i, j)| jwt_issuer(j, &format!("auth.jwt_issuers[{i}]"), problems))
        .collect();
    Config {
        server,
        providers,
        models,
        quota,
        routing,
        jwt_issuers,
        metering: metering(&raw.metering, problems),
        cache: super::cache::settings(&raw.cache, problems),
        usage: UsageSettings {
            retention: raw.usage.retention.as_ref().map(|d| d.0).inspect(|d| {
                if *d < Duration::from_secs(86400) {
                    problems.push(Problem::at(
                        "usage.retention",
                        "must be at least 1d (raw events of the current day are always kept)",
                    ));
                }
            }),
        },
        log: LogSettings {
            format: raw.log.format.map(|f| match f {
                RawLogFormat::Json => LogFormat::Json,
                RawLogFormat::Pretty => LogFormat::Pretty,
            }),
            access: raw.log.access.unwrap_or_default(),
        },
    }
}

/// Turns each model's `fallbacks` into canonical model names: each must name another model
/// (or its alias), once.
fn resolve_fallbacks(models: &mut [Model], problems: &mut Vec<Problem>) {
    let mut canonical: HashMap<String, String> = HashMap::new();
    for m in models.iter() {
        for name in std::iter::once(&m.name).chain(&m.aliases) {
            canonical
                .entry(name.clone())
                .or_insert_with(|| m.name.clone());
        }
    }
    for (i, m) in models.iter_mut().enumerate() {
        let mut resolved: Vec<String> = Vec::with_capacity(m.fallbacks.len());
        for (j, name) in m.fallbacks.iter().enumerate() {
            let path = format!("models[{i}].fallbacks[{j}]");
            match canonical.get(name) {
                None => problems.push(Problem::at(path, format!("unknown model {name:?}"))),
                Some(target) if *target == m.name => {
                    problems.push(Problem::at(path, "a model cannot fall back to itself"));
                }
                Some(target) if resolved.contains(target) => {
                    problems.push(Problem::at(path, format!("{target:?} is listed twice")));
                }
                Some(target) => resolved.push(target.clone()),
            }
        }
        m.fallbacks = resolved;
    }
}

/// Statuses that say the request itself is wrong: another deployment would answer the same.
const NEVER_RETRIED: [u16; 6] = [400, 401, 403, 404, 413, 422];
const MAX_RETRIES: u32 = 10;

fn routing(raw: &RawRouting, problems: &mut Vec<Problem>) -> RoutingSettings {
    let retries = raw.retries.unwrap_or(2);
    if retries > MAX_RETRIES {
        problems.push(Problem::at(
            "routing.retries",
            format!("must be at most {MAX_RETRIES}"),
        ));
    }
    let deadline = raw
        .deadline
        .as_ref()
        .map_or(Duration::from_secs(60), |d| d.0);
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&deadline) {
        problems.push(Problem::at(
            "routing.deadline",
            "must be between 100ms and 1h",
        ));
    }
    let retry_on = raw
        .retry_on
        .clone()
        .unwrap_or_else(|| vec![429, 500, 502, 503, 504, 529]);
    for (i, status) in retry_on.iter().enumerate() {
        if NEVER_RETRIED.contains(status) {
            problems.push(Problem::at(
                format!("routing.retry_on[{i}]"),
                format!(
                    "{status} says the request itself is wrong and is never retried (400, 401, 403, 404, 413 and 422 are not)"
                ),
            ));
        } else if !(408..=599).contains(status) {
            problems.push(Problem::at(
                format!("routing.retry_on[{i}]"),
                format!("{status} is not an error status that could be retried (408 to 599)"),
            ));
        }
    }
    let c = &raw.cooldown;
    let window = c.window.as_ref().map_or(Duration::from_secs(30), |d| d.0);
    let duration = c.duration.as_ref().map_or(Duration::from_secs(30), |d| d.0);
    for (field, value) in [("window", window), ("duration", duration)] {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&value) {
            problems.push(Problem::at(
                format!("routing.cooldown.{field}"),
                "must be between 1s and 1h",
            ));
        }
    }
    let health_check = raw.health_check.as_ref().map(|h| {
        let interval = h.interval.as_ref().map_or(Duration::from_secs(10), |d| d.0);
        let timeout = h.timeout.as_ref().map_or(Duration::from_secs(5), |d| d.0);
        for (field, value) in [("interval", interval), ("timeout", timeout)] {
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&value) {
                problems.push(Problem::at(
                    format!("routing.health_check.{field}"),
                    "must be between 100ms and 1h",
                ));
            }
        }
        HealthCheckSettings { interval, timeout }
    });
    RoutingSettings {
        health_check,
        retries,
        deadline,
        retry_on,
        cooldown: CooldownSettings {
            failures: c.failures.unwrap_or(5),
            window,
            duration,
        },
    }
}

fn metering(raw: &RawMetering, problems: &mut Vec<Problem>) -> MeteringSettings {
    let timeout = raw
        .drain_timeout
        .as_ref()
        .map_or(Duration::from_secs(60), |d| d.0);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&timeout) {
        problems.push(Problem::at(
            "metering.drain_timeout",
            "must be between 1s and 1h",
        ));
    }
    MeteringSettings {
        drain: (raw.on_client_abort == Some(RawOnClientAbort::Drain)).then_some(timeout),
    }
}

/// Signature algorithms a JWT issuer may be configured with.
pub const JWT_ALGORITHMS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384",
];

fn jwt_issuer(raw: &RawJwtIssuer, path: &str, problems: &mut Vec<Problem>) -> JwtIssuer {
    if raw.issuer.trim().is_empty() {
        problems.push(Problem::at(format!("{path}.issuer"), "must not be empty"));
    }
    if raw.audience.trim().is_empty() {
        problems.push(Problem::at(format!("{path}.audience"), "must not be empty"));
    }
    let algorithms = if raw.algorithms.is_empty() {
        vec!["RS256".to_string(), "ES256".to_string()]
    } else {
        raw.algorithms.clone()
    };
    for (i, alg) in algorithms.iter().enumerate() {
        if !JWT_ALGORITHMS.contains(&alg.as_str()) {
            problems.push(Problem::at(
                format!("{path}.algorithms[{i}]"),
                format!(
                    "unsupported algorithm {alg:?} (supported: {})",
                    JWT_ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    for (i, jwk) in raw.jwks.iter().enumerate() {
        if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(jwk).is_err() {
            problems.push(Problem::at(
                format!("{path}.jwks[{i}]"),
                "must be a JWK as a JSON object",
            ));
        }
    }
    let jwks_url = raw
        .jwks_url
        .as_deref()
        .and_then(|u| match check_base_url(u) {
            Ok(url) => Some(url),
            Err(e) => {
                problems.push(Problem::at(format!("{path}.jwks_url"), e));
                None
            }
        });
    if raw.jwks.is_empty() && raw.jwks_file.is_none() && jwks_url.is_none() {
        problems.push(Problem::at(
            format!("{path}.jwks"),
            "give the verification keys: jwks, jwks_file or jwks_url",
        ));
    }
    let subject = match raw.subject {
        Some(RawSubjectKind::Team) => SubjectKind::Team,
        _ => SubjectKind::User,
    };
    JwtIssuer {
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        algorithms,
        jwks: raw.jwks.clone(),
        jwks_file: raw.jwks_file.as_ref().map(PathBuf::from),
        jwks_url,
        refresh: raw.refresh.as_ref().map_or(Duration::from_secs(600), |d| {
            d.0.max(Duration::from_secs(1))
        }),
        leeway: raw.leeway.as_ref().map_or(Duration::from_secs(30), |d| d.0),
        claim: raw.claim.clone().unwrap_or_else(|| match subject {
            SubjectKind::User => "email".to_string(),
            SubjectKind::Team => "team".to_string(),
        }),
        subject,
    }
}

fn quota(raw: &RawQuota, problems: &mut Vec<Problem>) -> QuotaSettings {
    let default_max_tokens = raw.default_max_tokens.unwrap_or(4096);
    if !(1..=10_000_000).contains(&default_max_tokens) {
        problems.push(Problem::at(
            "quota.default_max_tokens",
            "must be between 1 and 10000000",
        ));
    }
    let slot_lease = raw
        .slot_lease
        .as_ref()
        .map_or(Duration::from_secs(600), |d| d.0);
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&slot_lease) {
        problems.push(Problem::at(
            "quota.slot_lease",
            "must be between 1s and 24h",
        ));
    }
    QuotaSettings {
        on_store_error: match raw.on_store_error {
            Some(RawOnStoreError::FailClosed) => OnStoreError::FailClosed,
            _ => OnStoreError::FailOpen,
        },
        default_max_tokens,
        slot_lease,
        leases: raw.leases.unwrap_or(true),
    }
}

fn server(raw: &RawServer, problems: &mut Vec<Problem>) -> ServerSettings {
    let mut listen = |field: &str, value: &Option<String>, default: &str| -> SocketAddr {
        let text = value.as_deref().unwrap_or(default);
        text.trim().parse().unwrap_or_else(|_| {
            problems.push(Problem::at(
                format!("server.{field}"),
                format!("invalid listen address {text:?}: expected IP:port such as 0.0.0.0:8080"),
            ));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    };
    let proxy_listen = listen("proxy_listen", &raw.proxy_listen, "0.0.0.0:8080");
    let admin_listen = listen("admin_listen", &raw.admin_listen, "0.0.0.0:8081");
    let metrics_listen = listen("metrics_listen", &raw.metrics_listen, "0.0.0.0:9464");
    if proxy_listen == metrics_listen && proxy_listen.port() != 0 {
        problems.push(Problem::at(
            "server.metrics_listen",
            format!("{metrics_listen} is also the proxy_listen address"),
        ));
    }

    let threads = raw
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=1024).contains(&threads) {
        problems.push(Problem::at(
            "server.threads",
            format!("must be between 1 and 1024, got {threads}"),
        ));
    }
    let max_body = raw.max_body_size.map_or(DEFAULT_MAX_BODY, |s| s.0);
    if !(1024..=(1 << 30)).contains(&max_body) {
        problems.push(Problem::at(
            "server.max_body_size",
            format!("must be between 1KiB and 1GiB, got {max_body} bytes"),
        ));
    }
    let admin_token_ttl = raw
        .admin_token_ttl
        .as_ref()
        .map_or(Duration::from_secs(3600), |d| d.0);
    if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86400)).contains(&admin_token_ttl) {
        problems.push(Problem::at(
            "server.admin_token_ttl",
            "must be between 1m and 7d",
        ));
    }
    let admin_login_attempts = raw.admin_login_attempts.unwrap_or(10);
    if !(1..=10_000).contains(&admin_login_attempts) {
        problems.push(Problem::at(
            "server.admin_login_attempts",
            "must be between 1 and 10000",
        ));
    }
    let key_rotation_grace = raw
        .key_rotation_grace
        .as_ref()
        .map_or(Duration::from_secs(86400), |d| d.0);
    if key_rotation_grace > Duration::from_secs(30 * 86400) {
        problems.push(Problem::at(
            "server.key_rotation_grace",
            "must be at most 30d",
        ));
    }
    let shutdown_grace = raw.shutdown_grace.map_or(Duration::from_secs(10), |d| d.0);
    let drain_delay = raw.drain_delay.map_or(Duration::ZERO, |d| d.0);
    if drain_delay > shutdown_grace {
        problems.push(Problem::at(
            "server.drain_delay",
            "must not be longer than server.shutdown_grace (requests are cut when the grace period ends)",
        ));
    }
    for (i, origin) in raw.admin_cors_origins.iter().enumerate() {
        let parsed = Url::parse(origin).ok();
        let is_origin = parsed.as_ref().is_some_and(|u| {
            ["http", "https"].contains(&u.scheme())
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && !origin.trim_end_matches('/').ends_with(':')
        }) && !origin.trim_end_matches('/').contains(['?', '#'])
            && origin.trim_end_matches('/').matches('/').count() == 2;
        if !is_origin {
            problems.push(Problem::at(
                format!("server.admin_cors_origins[{i}]"),
                format!("`{origin}` is not an origin: scheme, host and optional port, e.g. https://admin.example.com"),
            ));
        }
    }
    ServerSettings {
        proxy_listen,
        admin_listen,
        metrics_listen,
        threads,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        data_dir: PathBuf::from(raw.data_dir.as_deref().unwrap_or(".tollgate")),
        shutdown_grace,
        drain_delay,
        admin_cors_origins: raw.admin_cors_origins.clone(),
        tls: raw.tls.as_ref().map(|t| TlsFiles {
            cert: PathBuf::from(&t.cert),
            key: PathBuf::from(&t.key),
        }),
        admin_token_ttl,
        key_rotation_grace,
        admin_login_attempts,
        connections: connections(raw, problems),
    }
}

fn connections(raw: &RawServer, problems: &mut Vec<Problem>) -> ConnectionSettings {
    let defaults = ConnectionSettings::default();
    let mut duration = |field: &str, value: &Option<DurationText>, default: Duration| {
        let d = value.as_ref().map_or(default, |d| d.0);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
            problems.push(Problem::at(
                format!("server.{field}"),
                "must be between 100ms and 1h",
            ));
        }
        d
    };
    let header_timeout = duration(
        "header_timeout",
        &raw.header_timeout,
        defaults.header_timeout,
    );
    let body_timeout = duration("body_timeout", &raw.body_timeout, defaults.body_timeout);
    let keepalive_timeout = duration(
        "keepalive_timeout",
        &raw.keepalive_timeout,
        defaults.keepalive_timeout,
    );
    let max_connections = raw.max_connections.unwrap_or(defaults.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        problems.push(Problem::at(
            "server.max_connections",
            "must be between 1 and 1000000",
        ));
    }
    let max_header = raw
        .max_header_size
        .map_or(defaults.max_header_bytes as u64, |s| s.0);
    if !(1024..=(1 << 20)).contains(&max_header) {
        problems.push(Problem::at(
            "server.max_header_size",
            format!("must be between 1KiB and 1MiB, got {max_header} bytes"),
        ));
    }
    ConnectionSettings {
        header_timeout,
        body_timeout,
        keepalive_timeout,
        max_connections,
        max_header_bytes: usize::try_from(max_header).unwrap_or(usize::MAX),
    }
}

fn provider(raw: &RawProvider, path: &str, problems: &mut Vec<Problem>) -> Provider {
    let kind = match raw.kind {
        RawProviderKind::Openai => ProviderKind::OpenAi,
        RawProviderKind::OpenaiCompatible => ProviderKind::OpenAiCompatible,
        RawProviderKind::AzureOpenai => ProviderKind::AzureOpenAi,
        RawProviderKind::Mock => ProviderKind::Mock,
        RawProviderKind::Anthropic => ProviderKind::Anthropic,
        RawProviderKind::AnthropicMock => ProviderKind::AnthropicMock,
    };
    if let Err(message) = check_identifier(&raw.name) {
        problems.push(Problem::at(format!("{path}.name"), message));
    }

    let base_url = match (&raw.base_url, kind) {
        (Some(_), kind) if kind.in_process() => {
            problems.push(Problem::at(
                format!("{path}.base_url"),
                "a mock provider is served in-process on loopback; remove base_url",
            ));
            None
        }
        (None, kind) if kind.in_process() => None,
        (None, ProviderKind::Anthropic) => Url::parse(ANTHROPIC_BASE_URL).ok(),
        (None, _) => {
            problems.push(Problem::at(
                format!("{path}.base_url"),
                format!("base_url is required for kind {}", kind.as_str()),
            ));
            None
        }
        (Some(text), _) => match check_base_url(text) {
            Ok(url) => Some(url),
            Err(message) => {
                problems.push(Problem::at(format!("{path}.base_url"), message));
                None
            }
        },
    };

    let api_key = raw
        .api_key
        .as_ref()
        .filter(|k| !k.is_empty())
        .map(Secret::new);
    let credential = raw.credential.clone().filter(|c| !c.is_empty());
    if api_key.is_some() && credential.is_some() {
        problems.push(Problem::at(
            format!("{path}.credential"),
            "give either api_key or credential, not both",
        ));
    }
    if api_key.is_none()
        && credential.is_none()
        && matches!(
            kind,
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::Anthropic
        )
    {
        problems.push(Problem::at(
            format!("{path}.api_key"),
            format!(
                "api_key (or credential) is required for kind {} (e.g. api_key: ${{OPENAI_API_KEY}})",
                kind.as_str()
            ),
        ));
    }
    if let Some(key) = &api_key
        && (key.expose().bytes().any(|b| b.is_ascii_control()) || !key.expose().is_ascii())
    {
        problems.push(Problem::at(
            format!("{path}.api_key"),
            "api_key must be printable ASCII",
        ));
    }

    let api_version = raw.api_version.clone().filter(|v| !v.is_empty());
    match (kind, &api_version) {
        (ProviderKind::AzureOpenAi, None) => problems.push(Problem::at(
            format!("{path}.api_version"),
            "api_version is required for kind azure-openai (e.g. 2024-10-21)",
        )),
        (ProviderKind::AzureOpenAi, Some(v))
            if !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            problems.push(Problem::at(
                format!("{path}.api_version"),
                format!("invalid api_version {v:?}"),
            ))
        }
        (ProviderKind::AzureOpenAi, Some(_)) => {}
        (_, Some(_)) => problems.push(Problem::at(
            format!("{path}.api_version"),
            "api_version applies only to kind azure-openai",
        )),
        (_, None) => {}
    }

    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in &raw.headers {
        let header_path = format!("{path}.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(Problem::at(
                header_path,
                format!("invalid header name {name:?}"),
            ));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.push(Problem::at(
                header_path,
                format!("{name} is set by the gateway and cannot be overridden"),
            ));
        } else if http::HeaderValue::from_str(value).is_err() {
            problems.push(Problem::at(
                header_path,
                "invalid header value (control characters or non-ASCII)",
            ));
        } else {
            headers.push((name.to_ascii_lowercase(), value.clone()));
        }
    }

    let defaults = Timeouts::default();
    let mut timeout = |field: &str, value: Option<Duration>, default: Duration| {
        let value = value.unwrap_or(default);
        if value.is_zero() {
            problems.push(Problem::at(
                format!("{path}.timeouts.{field}"),
                "must be greater than zero",
            ));
        }
        value
    };
    let timeouts = Timeouts {
        connect: timeout(
            "connect",
            raw.timeouts.connect.map(|d| d.0),
            defaults.connect,
        ),
        first_byte: timeout(
            "first_byte",
            raw.timeouts.first_byte.map(|d| d.0),
            defaults.first_byte,
        ),
        idle: timeout("idle", raw.timeouts.idle.map(|d| d.0), defaults.idle),
    };

    let anthropic = anthropic_options(raw, kind, path, problems);
    Provider {
        name: raw.name.clone(),
        kind,
        base_url,
        api_key,
        credential,
        api_version,
        headers,
        timeouts,
        anthropic,
    }
}

/// Where an `anthropic` provider is, unless its `base_url` says otherwise.
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

fn anthropic_options(
    raw: &RawProvider,
    kind: ProviderKind,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<AnthropicOptions> {
    if !kind.speaks_anthropic() {
        for (field, set) in [
            ("anthropic_version", raw.anthropic_version.is_some()),
            ("max_tokens", raw.max_tokens.is_some()),
            (
                "drop_unsupported_params",
                raw.drop_unsupported_params.is_some(),
            ),
        ] {
            if set {
                problems.push(Problem::at(
                    format!("{path}.{field}"),
                    format!("{field} applies only to kinds anthropic and anthropic-mock"),
                ));
            }
        }
        return None;
    }
    let version = raw
        .anthropic_version
        .clone()
        .unwrap_or_else(|| crate::anthropic::DEFAULT_VERSION.to_owned());
    if version.is_empty()
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        problems.push(Problem::at(
            format!("{path}.anthropic_version"),
            format!("invalid anthropic_version {version:?} (e.g. 2023-06-01)"),
        ));
    }
    let max_tokens = raw.max_tokens.unwrap_or(4096);
    if max_tokens == 0 {
        problems.push(Problem::at(
            format!("{path}.max_tokens"),
            "max_tokens must be at least 1",
        ));
    }
    Some(AnthropicOptions {
        version,
        max_tokens,
        drop_unsupported: raw.drop_unsupported_params.unwrap_or(false),
    })
}

fn model(
    raw: &RawModel,
    path: &str,
    providers: &[RawProvider],
    provider_index: &HashMap<&str, usize>,
    routing: &RoutingSettings,
    problems: &mut Vec<Problem>,
) -> Model {
    if raw.retries.is_some_and(|r| r > MAX_RETRIES) {
        problems.push(Problem::at(
            format!("{path}.retries"),
            format!("must be at most {MAX_RETRIES}"),
        ));
    }
    if raw.deployments.is_empty() {
        problems.push(Problem::at(
            format!("{path}.deployments"),
            "at least one deployment is required",
        ));
    }
    if raw.deployments.len() > MAX_DEPLOYMENTS {
        problems.push(Problem::at(
            format!("{path}.deployments"),
            format!(
                "at most {MAX_DEPLOYMENTS} deployments per model, got {}",
                raw.deployments.len()
            ),
        ));
    }
    let mut deployments = Vec::with_capacity(raw.deployments.len());
    for (j, d) in raw.deployments.iter().enumerate() {
        let dpath = format!("{path}.deployments[{j}]");
        let Some(&provider) = provider_index.get(d.provider.as_str()) else {
            let mut known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
            known.sort_unstable();
            let known = if known.is_empty() {
                "no providers are configured".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            problems.push(Problem::at(
                format!("{dpath}.provider"),
                format!("unknown provider {:?} ({known})", d.provider),
            ));
            continue;
        };
        let upstream_model = d.model.clone().unwrap_or_else(|| raw.name.clone());
        if upstream_model.is_empty() || upstream_model.bytes().any(|b| b.is_ascii_control()) {
            problems.push(Problem::at(
                format!("{dpath}.model"),
                "invalid upstream model name",
            ));
        }
        for (field, value) in [("rpm", d.rpm), ("tpm", d.tpm)] {
            if value == Some(0) {
                problems.push(Problem::at(
                    format!("{dpath}.{field}"),
                    "must be a positive number (omit it for no limit)",
                ));
            }
        }
        deployments.push(Deployment {
            provider,
            upstream_model,
            weight: d.weight.unwrap_or(1),
            rpm: d.rpm,
            tpm: d.tpm,
        });
    }
    if !raw.deployments.is_empty() && raw.deployments.iter().all(|d| d.weight == Some(0)) {
        problems.push(Problem::at(
            format!("{path}.deployments"),
            "every deployment has weight 0: at least one must take traffic",
        ));
    }
    let owned_by = raw.owned_by.clone().unwrap_or_else(|| {
        raw.deployments
            .first()
            .map_or_else(String::new, |d| d.provider.clone())
    });
    Model {
        name: raw.name.clone(),
        aliases: raw.aliases.clone(),
        deployments,
        pricing: raw.pricing.as_ref().map(|p| Pricing {
            input_micro_usd_per_million: p.input_per_million.micro_usd,
            output_micro_usd_per_million: p.output_per_million.micro_usd,
            cache_read_micro_usd_per_million: p.cache_read_per_million.map(|c| c.micro_usd),
            cache_write_micro_usd_per_million: p.cache_write_per_million.map(|c| c.micro_usd),
        }),
        owned_by,
        retries: raw.retries.unwrap_or(routing.retries),
        strategy: match raw.strategy {
            None | Some(RawStrategy::Weighted) => Strategy::Weighted,
            Some(RawStrategy::LeastInflight) => Strategy::LeastInflight,
            Some(RawStrategy::Latency) => Strategy::Latency,
        },
        // Resolved to canonical names once every model is known (see `resolve_fallbacks`).
        fallbacks: raw.fallbacks.clone(),
        // Set by the caller, over `cache.default`.
        cache: super::CachePolicy::default(),
    }
}

fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("name must be 1 to 64 characters, got {name:?}"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "invalid name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 {
        return Err(format!(
            "model name must be 1 to 256 characters, got {name:?}"
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid model name {name:?}: no spaces or control characters"
        ));
    }
    Ok(())
}

fn check_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {:?}: {e}", redact_url(text)))?;
    let text = &redact_url(text);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid URL {text:?}: the scheme must be http or https"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {text:?}: no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid URL {text:?}: no query or fragment allowed"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid URL {text:?}: put credentials in api_key, not in the URL"
        ));
    }
    Ok(url)
}

/// The URL with any password replaced, fit for an error message.
fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}
