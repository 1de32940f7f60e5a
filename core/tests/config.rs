#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The config loader end to end: every shipped config validates, bad configs are rejected
//! with the path and line of the problem, and the committed JSON Schema is current.

use std::path::{Path, PathBuf};

use tollgate_core::config::{Config, ConfigError, ProviderKind, json_schema};

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, "test.yaml", &|name| match name {
        "OPENAI_API_KEY" => Some("sk-test".into()),
        _ => None,
    })
}

fn error(text: &str) -> String {
    load(text)
        .expect_err("config should be rejected")
        .to_string()
}

const GOOD: &str = "\
server:
  proxy_listen: 127.0.0.1:0
  max_body_size: 1MiB
providers:
  - name: mock
    kind: mock
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    headers:
      OpenAI-Project: proj_1
    timeouts: {connect: 2s, first_byte: 30s, idle: 15s}
models:
  - name: gpt-4o-mini
    aliases: [mini]
    deployments:
      - provider: openai
        weight: 3
      - provider: mock
        model: mock-mini
        weight: 0
    pricing: {input_per_million: 0.15, output_per_million: \"0.60\"}
";

#[test]
fn a_good_config_resolves() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.server.max_body_bytes, 1 << 20);
    assert_eq!(
        config.providers[1].api_key.as_ref().unwrap().expose(),
        "sk-test"
    );
    assert_eq!(
        config.providers[1].headers,
        vec![("openai-project".to_string(), "proj_1".to_string())]
    );
    assert_eq!(config.providers[0].kind, ProviderKind::Mock);
    let model = config.find_model("mini").unwrap();
    assert_eq!(model.name, "gpt-4o-mini");
    assert_eq!(model.deployments[0].provider, 1);
    assert_eq!(model.deployments[0].upstream_model, "gpt-4o-mini");
    assert_eq!(model.deployments[1].upstream_model, "mock-mini");
    let pricing = model.pricing.unwrap();
    assert_eq!(pricing.input_micro_usd_per_million, 150_000);
    assert_eq!(pricing.output_micro_usd_per_million, 600_000);
    assert!(
        !format!("{config:?}").contains("sk-test"),
        "Debug must not print secrets"
    );
}

#[test]
fn cached_prompt_tokens_are_priced_at_their_own_rates() {
    let text = "providers:\n  - {name: claude, kind: anthropic, api_key: k}\nmodels:\n  - name: claude\n    deployments: [{provider: claude}]\n    pricing: {input_per_million: 3, output_per_million: 15, cache_read_per_million: 0.3, cache_write_per_million: 3.75}\n";
    let config = load(text).unwrap();
    let pricing = config.find_model("claude").unwrap().pricing.unwrap();
    assert_eq!(pricing.cache_read_micro_usd_per_million, Some(300_000));
    assert_eq!(pricing.cache_write_micro_usd_per_million, Some(3_750_000));
    // 1,000 prompt tokens: 100 plain, 800 read from the cache, 100 written to it; 200 out.
    // 100 × 3 + 800 × 0.3 + 100 × 3.75 + 200 × 15 = 300 + 240 + 375 + 3000 = 3915 µUSD.
    assert_eq!(pricing.cost_cached(1_000, 200, 800, 100), 3_915);
    // Without cache prices, cached tokens cost what any input token costs.
    let plain = tollgate_core::config::Pricing {
        cache_read_micro_usd_per_million: None,
        cache_write_micro_usd_per_million: None,
        ..pricing
    };
    assert_eq!(
        plain.cost_cached(1_000, 200, 800, 100),
        plain.cost(1_000, 200)
    );
}

#[test]
fn unknown_field_names_path_and_line() {
    let bad = GOOD.replace(
        "        weight: 3\n",
        "        weight: 3\n        wieght: 4\n",
    );
    let message = error(&bad);
    assert_eq!(
        message,
        "test.yaml:20: models[0].deployments[0].wieght: unknown field `wieght`, expected one of `provider`, `model`, `weight`, `rpm`, `tpm`"
    );
}

#[test]
fn unknown_provider_names_path_and_line() {
    let bad = GOOD.replace("      - provider: openai", "      - provider: opnai");
    assert_eq!(
        error(&bad),
        "test.yaml:18: models[0].deployments[0].provider: unknown provider \"opnai\" (known: mock, openai)"
    );
}

#[test]
fn duplicate_model_names_and_aliases_are_rejected() {
    let bad = format!("{GOOD}  - name: mini\n    deployments: [{{provider: mock}}]\n");
    assert_eq!(
        error(&bad),
        "test.yaml:24: models[1].name: duplicate model name \"mini\" (also models[0].aliases[0])"
    );
    let bad = format!("{GOOD}  - name: gpt-4o-mini\n    deployments: [{{provider: mock}}]\n");
    assert!(
        error(&bad)
            .contains("models[1].name: duplicate model name \"gpt-4o-mini\" (also models[0].name)")
    );
}

#[test]
fn bad_urls_are_rejected() {
    for (url, why) in [
        ("not a url", "relative URL without a base"),
        ("ftp://example.com/v1", "the scheme must be http or https"),
        (
            "https://user:pw@example.com/v1",
            "put credentials in api_key",
        ),
        ("https://example.com/v1?x=1", "no query or fragment"),
    ] {
        let bad = GOOD.replace("https://api.openai.com/v1", url);
        let message = error(&bad);
        assert!(
            message.starts_with("test.yaml:9: providers[1].base_url: invalid URL"),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = "\
server:
  proxy_listen: localhost
providers:
  - {name: a, kind: openai, base_url: https://x.example/v1}
  - {name: a, kind: azure-openai, base_url: https://y.example, api_key: k}
models:
  - name: m
    deployments: []
";
    let message = error(bad);
    for expected in [
        "test.yaml:2: server.proxy_listen: invalid listen address \"localhost\"",
        "test.yaml:4: providers[0].api_key: api_key (or credential) is required for kind openai",
        "test.yaml:5: providers[1].api_version: api_version is required",
        "test.yaml:5: providers[1].name: duplicate provider name \"a\" (also providers[0])",
        "test.yaml:8: models[0].deployments: at least one deployment is required",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn type_errors_syntax_errors_and_env_vars() {
    let message = error(&GOOD.replace("kind: openai", "kind: opnai"));
    assert!(
        message.starts_with("test.yaml:8: providers[1].kind: unknown variant `opnai`"),
        "{message}"
    );
    let message = error("models: [\n");
    assert!(
        message.starts_with("test.yaml:2: invalid YAML"),
        "{message}"
    );
    let message = error(&GOOD.replace("${OPENAI_API_KEY}", "${MISSING_KEY}"));
    assert!(
        message.starts_with(
            "test.yaml:10: providers[1].api_key: environment variable MISSING_KEY is not set"
        ),
        "{message}"
    );
    let message = error(&GOOD.replace("max_body_size: 1MiB", "max_body_size: 1 parsec"));
    assert!(
        message.starts_with("test.yaml:3: server.max_body_size: invalid size"),
        "{message}"
    );
    let message = error(&GOOD.replace("connect: 2s", "connect: soon"));
    assert!(
        message.contains("providers[1].timeouts.connect: invalid duration \"soon\""),
        "{message}"
    );
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Example configs take provider keys and endpoints from the environment.
            let env = |name: &str| {
                if name.ends_with("_KEY") {
                    Some("test-key".to_string())
                } else if name.ends_with("_ENDPOINT") {
                    Some("https://example.openai.azure.com".to_string())
                } else {
                    None
                }
            };
            Config::from_yaml(&text, &path.display().to_string(), &env)
                .unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the default and example configs, found {checked}"
    );
}

#[test]
fn committed_json_schema_is_current() {
    let path = config_dir().join("tollgate.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == json_schema(),
        "{} is stale: run `cargo run --bin tollgate -- schema > config/tollgate.schema.json`",
        path.display()
    );
}

#[test]
fn routing_defaults_and_per_model_settings() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.routing.retries, 2);
    assert_eq!(config.routing.deadline, std::time::Duration::from_secs(60));
    assert_eq!(config.routing.retry_on, vec![429, 500, 502, 503, 504, 529]);
    assert_eq!(config.routing.cooldown.failures, 5);
    assert_eq!(config.models[0].retries, 2);
    assert_eq!(
        config.models[0].strategy,
        tollgate_core::config::Strategy::Weighted
    );

    let tuned = format!(
        "routing:\n  retries: 1\n  retry_on: [429, 503]\n  cooldown: {{failures: 3, window: 10s, duration: 5s}}\n{GOOD}  - name: big\n    strategy: least-inflight\n    retries: 4\n    fallbacks: [mini]\n    deployments: [{{provider: mock}}]\n"
    );
    let config = load(&tuned).unwrap();
    assert_eq!(config.routing.retry_on, vec![429, 503]);
    assert_eq!(config.models[0].retries, 1);
    let big = &config.models[1];
    assert_eq!(big.retries, 4);
    assert_eq!(big.strategy, tollgate_core::config::Strategy::LeastInflight);
    // An alias resolves to the model's own name.
    assert_eq!(big.fallbacks, vec!["gpt-4o-mini".to_string()]);
}

#[test]
fn bad_routing_is_rejected_naming_the_field() {
    let with_model = |extra: &str| {
        format!("{GOOD}  - name: big\n{extra}    deployments: [{{provider: mock}}]\n")
    };
    let e = error(&with_model("    fallbacks: [gpt-5]\n"));
    assert!(
        e.contains("models[1].fallbacks[0]: unknown model \"gpt-5\""),
        "{e}"
    );
    let e = error(&with_model("    fallbacks: [big]\n"));
    assert!(
        e.contains("models[1].fallbacks[0]: a model cannot fall back to itself"),
        "{e}"
    );
    let e = error(&with_model("    fallbacks: [mini, gpt-4o-mini]\n"));
    assert!(
        e.contains("models[1].fallbacks[1]: \"gpt-4o-mini\" is listed twice"),
        "{e}"
    );
    let e = error(&with_model("    strategy: fastest\n"));
    assert!(e.contains("strategy"), "{e}");
    let e = error(&format!("routing:\n  retry_on: [429, 404]\n{GOOD}"));
    assert!(
        e.contains("routing.retry_on[1]: 404 says the request itself is wrong"),
        "{e}"
    );
    let e = error(&format!("routing:\n  retry_on: [200]\n{GOOD}"));
    assert!(
        e.contains("routing.retry_on[0]: 200 is not an error status"),
        "{e}"
    );
    let e = error(&format!("routing:\n  retries: 11\n{GOOD}"));
    assert!(e.contains("routing.retries: must be at most 10"), "{e}");
    let e = error(&format!("routing:\n  cooldown: {{window: 0s}}\n{GOOD}"));
    assert!(
        e.contains("routing.cooldown.window: must be between 1s and 1h"),
        "{e}"
    );
}

#[test]
fn operations_settings_are_checked() {
    let config = load(&format!(
        "{}log:\n  format: json\n",
        GOOD.replace(
            "server:\n",
            "server:\n  drain_delay: 5s\n  shutdown_grace: 30s\n  admin_cors_origins: ['https://admin.example.com', 'http://127.0.0.1:3000']\n",
        )
    ))
    .unwrap();
    assert_eq!(config.server.drain_delay, std::time::Duration::from_secs(5));
    assert_eq!(config.server.admin_cors_origins.len(), 2);
    assert_eq!(
        config.log.format,
        Some(tollgate_core::config::LogFormat::Json)
    );
    let err = error(&format!("{GOOD}log:\n  format: xml\n"));
    assert!(err.contains("log.format"), "{err}");
    use tollgate_core::config::AccessLog;
    assert_eq!(config.log.access, AccessLog::All);
    let errors = load(&format!("{GOOD}log:\n  access: errors\n")).unwrap();
    assert_eq!(errors.log.access, AccessLog::Errors);
    assert!(!AccessLog::Errors.logs(200, false));
    assert!(
        AccessLog::Errors.logs(200, true),
        "a stream cut off after its 200"
    );
    assert!(AccessLog::Errors.logs(429, false) && AccessLog::Errors.logs(0, false));
    assert!(!AccessLog::Off.logs(500, true) && AccessLog::All.logs(200, false));
    let err = error(&format!("{GOOD}log:\n  access: some\n"));
    assert!(err.contains("log.access"), "{err}");
    let err = error(&format!("{GOOD}usage:\n  retention: 12h\n"));
    assert!(err.contains("usage.retention"), "{err}");
    let kept = load(&format!("{GOOD}usage:\n  retention: 90d\n")).unwrap();
    assert_eq!(
        kept.usage.retention,
        Some(std::time::Duration::from_secs(90 * 86400))
    );
    let err = error(&GOOD.replace(
        "server:\n",
        "server:\n  drain_delay: 20s\n  admin_cors_origins: ['https://admin.example.com/ui', 'admin.example.com']\n",
    ));
    assert!(err.contains("server.drain_delay"), "{err}");
    assert!(err.contains("server.admin_cors_origins[0]"), "{err}");
    assert!(err.contains("server.admin_cors_origins[1]"), "{err}");
}
