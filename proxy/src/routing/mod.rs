//! The route table: model names and aliases to their deployments, and the weighted choice
//! of which deployment serves a request (untried ones first, weight-0 ones as fallbacks).
//! `attempts` follows one request's attempts; `choice` picks each attempt's deployment
//! together with its quota.

pub mod attempts;
pub mod checks;
pub mod choice;
pub mod failover;
pub mod health;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use http::{HeaderValue, Uri};

use tollgate_core::config::{Config, HealthCheckSettings, Pricing, Strategy};

use crate::{
    downstream::endpoints::Endpoint,
    metrics::handles::DeploymentMetrics,
    quota::{Limits, Owner, Scoped},
    routing::health::{Admission, DeploymentHealth},
    upstream::Upstream,
};

pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
    /// Each model once, in the config's order.
    models: Vec<Arc<Route>>,
    /// Upstream statuses retried on another deployment.
    pub retry_on: Vec<u16>,
    /// No attempt starts later than this after the request arrived.
    pub deadline: Duration,
    /// Active checks of cooled-down deployments, when configured.
    pub health_check: Option<HealthCheckSettings>,
}

pub struct Route {
    /// The configured model name (what metrics and logs report).
    pub model: String,
    pub aliases: Vec<String>,
    pub deployments: Vec<RouteDeployment>,
    pub pricing: Option<Pricing>,
    /// Further attempts after the first.
    pub retries: u32,
    pub strategy: Strategy,
    /// Models (canonical names) that take the request when every deployment failed.
    pub fallbacks: Vec<String>,
    /// Whether and how its answers are cached.
    pub cache: tollgate_core::config::CachePolicy,
}

pub struct RouteDeployment {
    /// Unique in the table across models: what quota holds are kept by.
    pub id: usize,
    pub upstream: Arc<Upstream>,
    pub upstream_model: String,
    pub weight: u32,
    /// Requests and tokens per minute allowed to this deployment, all clients together.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Failures and cooldown, shared by every request of this replica.
    pub health: Arc<DeploymentHealth>,
    /// `provider/upstream-model`, as logs and `x-tollgate-deployment` name it.
    pub label: String,
    pub label_header: HeaderValue,
    /// Its metric series, resolved once.
    pub metrics: DeploymentMetrics,
    /// The upstream path of each endpoint, for requests without a query string.
    pub paths: [OnceLock<Uri>; Endpoint::ALL.len()],
}

impl RouteDeployment {
    /// The upstream path (and query) of `endpoint`: built once per endpoint, and per request
    /// only when the client's request has a query string.
    pub fn upstream_uri(&self, endpoint: Endpoint, query: Option<&str>) -> pingora::Result<Uri> {
        if query.is_some() {
            return self.upstream.uri_for(endpoint, &self.upstream_model, query);
        }
        let slot = &self.paths[endpoint.index()];
        if let Some(uri) = slot.get() {
            return Ok(uri.clone());
        }
        let uri = self
            .upstream
            .uri_for(endpoint, &self.upstream_model, None)?;
        Ok(slot.get_or_init(|| uri).clone())
    }

    /// The quota scope of this deployment: the provider account and upstream model.
    pub fn scope(&self) -> String {
        format!("d:{}/{}", self.upstream.name, self.upstream_model)
    }

    /// This deployment's own limits as a quota scope, if it has any.
    pub fn quota_scope(&self) -> Option<Scoped> {
        (self.rpm.is_some() || self.tpm.is_some()).then(|| Scoped {
            scope: self.scope(),
            limits: Limits {
                rpm: self.rpm,
                tpm: self.tpm,
                ..Default::default()
            },
            owner: Owner::Deployment,
        })
    }
}

/// Deployments already tried for one request (a model has at most 64).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried(u64);

impl Tried {
    pub fn mark(&mut self, index: usize) {
        self.0 |= 1 << index;
    }
    pub fn unmark(&mut self, index: usize) {
        self.0 &= !(1 << index);
    }
    pub fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
    /// This set with `index` added.
    pub fn with(mut self, index: usize) -> Self {
        self.mark(index);
        self
    }
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

impl RouteTable {
    /// Builds the table; `upstreams` is indexed like `config.providers`. A reload passes
    /// the table it replaces: deployments that still exist (same provider name, base URL and
    /// upstream model, same cooldown settings) keep their health. A provider moved to another
    /// address starts healthy: its failures were the old address's.
    pub fn new(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        previous: Option<&RouteTable>,
    ) -> Self {
        let mut routes = HashMap::new();
        let cooldown = config.routing.cooldown;
        let mut kept: HashMap<HealthKey, Arc<DeploymentHealth>> = previous
            .into_iter()
            .flat_map(|t| &t.models)
            .flat_map(|r| &r.deployments)
            .filter(|d| d.health.settings() == cooldown)
            .map(|d| (health_key(&d.upstream, &d.upstream_model), d.health.clone()))
            .collect();
        // One health record per provider and upstream model, shared by the models that
        // route to it (it is the same upstream whichever name the client used).
        let mut health: HashMap<(usize, &str), Arc<DeploymentHealth>> = HashMap::new();
        let mut next_id = 0..;
        let mut models = Vec::with_capacity(config.models.len());
        for model in &config.models {
            let route = Arc::new(Route {
                model: model.name.clone(),
                aliases: model.aliases.clone(),
                deployments: model
                    .deployments
                    .iter()
                    .map(|d| RouteDeployment {
                        id: next_id.next().unwrap_or_default(),
                        upstream: upstreams[d.provider].clone(),
                        upstream_model: d.upstream_model.clone(),
                        label: deployment_label(&upstreams[d.provider], &d.upstream_model),
                        label_header: label_header(&upstreams[d.provider], &d.upstream_model),
                        metrics: DeploymentMetrics::new(&model.name, &upstreams[d.provider].name),
                        paths: [const { OnceLock::new() }; Endpoint::ALL.len()],
                        weight: d.weight,
                        rpm: d.rpm,
                        tpm: d.tpm,
                        health: health
                            .entry((d.provider, d.upstream_model.as_str()))
                            .or_insert_with(|| {
                                kept.remove(&health_key(&upstreams[d.provider], &d.upstream_model))
                                    .unwrap_or_else(|| Arc::new(DeploymentHealth::new(cooldown)))
                            })
                            .clone(),
                    })
                    .collect(),
                pricing: model.pricing,
                retries: model.retries,
                strategy: model.strategy,
                fallbacks: model.fallbacks.clone(),
                cache: model.cache.clone(),
            });
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                routes.insert(name.clone(), route.clone());
            }
            models.push(route);
        }
        RouteTable {
            routes,
            models,
            retry_on: config.routing.retry_on.clone(),
            deadline: config.routing.deadline,
            health_check: config.routing.health_check,
        }
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// Every model once, in the config's order.
    pub fn models(&self) -> &[Arc<Route>] {
        &self.models
    }
}

fn deployment_label(upstream: &Upstream, upstream_model: &str) -> String {
    format!("{}/{upstream_model}", upstream.name)
}

/// The label as a header value; one with control characters keeps its visible ones.
fn label_header(upstream: &Upstream, upstream_model: &str) -> HeaderValue {
    let label = deployment_label(upstream, upstream_model);
    HeaderValue::try_from(label.as_str()).unwrap_or_else(|_| {
        let visible: String = label.chars().filter(char::is_ascii_graphic).collect();
        HeaderValue::try_from(visible).unwrap_or(HeaderValue::from_static("unnamed"))
    })
}

/// What a deployment's health is carried over by on reload.
type HealthKey = (String, String, String);

fn health_key(upstream: &Upstream, upstream_model: &str) -> HealthKey {
    (
        upstream.name.clone(),
        upstream.base_url.to_string(),
        upstream_model.to_string(),
    )
}

impl Route {
    /// The next deployment to try, or `None` when all have been tried or are cooling down.
    /// Deployments with weight 0 are taken only when no other is left.
    pub fn pick(&self, tried: Tried) -> Option<usize> {
        let now = Instant::now();
        let usable = |i: usize| {
            !tried.contains(i)
                && !matches!(self.deployments[i].health.peek(now), Admission::Closed(_))
        };
        let candidates: Vec<usize> = (0..self.deployments.len())
            .filter(|&i| self.deployments[i].weight > 0 && usable(i))
            .collect();
        if candidates.is_empty() {
            return (0..self.deployments.len()).find(|&i| usable(i));
        }
        Some(match self.strategy {
            Strategy::Weighted => self.weighted(&candidates),
            Strategy::LeastInflight => self.least_inflight(&candidates),
            Strategy::Latency => self.fastest_of_two(&candidates),
        })
    }

    /// At random in proportion to weight.
    fn weighted(&self, candidates: &[usize]) -> usize {
        let total: u64 = candidates
            .iter()
            .map(|&i| u64::from(self.deployments[i].weight))
            .sum();
        let mut ticket = fastrand::u64(..total.max(1));
        for &i in candidates {
            let weight = u64::from(self.deployments[i].weight);
            if ticket < weight {
                return i;
            }
            ticket -= weight;
        }
        candidates[0]
    }

    /// The fewest requests in flight on this replica; ties by weight.
    fn least_inflight(&self, candidates: &[usize]) -> usize {
        let fewest = candidates
            .iter()
            .map(|&i| self.deployments[i].health.in_flight())
            .min()
            .unwrap_or(0);
        let tied: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.deployments[i].health.in_flight() == fewest)
            .collect();
        self.weighted(&tied)
    }

    /// Power of two choices on the moving average of time to first byte; one pick in ten is
    /// random, so a deployment that was slow is measured again. Unmeasured ones count as
    /// fastest, so each new deployment gets measured.
    fn fastest_of_two(&self, candidates: &[usize]) -> usize {
        if candidates.len() == 1 || fastrand::u8(..10) == 0 {
            return self.weighted(candidates);
        }
        let first = self.weighted(candidates);
        let rest: Vec<usize> = candidates.iter().copied().filter(|&i| i != first).collect();
        let second = self.weighted(&rest);
        let latency = |i: usize| self.deployments[i].health.ttfb_micros();
        if latency(second) < latency(first) {
            second
        } else {
            first
        }
    }

    /// Takes deployment `index` for an attempt: `None` when it is cooling down after all,
    /// `Some(true)` when the attempt is its half-open probe (whose result must be reported,
    /// or the probe released), `Some(false)` when it is open.
    pub fn claim(&self, index: usize) -> Option<bool> {
        match self.deployments.get(index)?.health.admit(Instant::now()) {
            Admission::Closed(_) => None,
            Admission::Probe => Some(true),
            Admission::Open => Some(false),
        }
    }

    /// Gives back a probe claimed for an attempt that will not be made.
    pub fn release(&self, index: usize) {
        if let Some(d) = self.deployments.get(index) {
            d.health.release_probe(Instant::now());
        }
    }

    /// When every deployment is cooling down: how long until the first may take traffic.
    pub fn all_cooling(&self) -> Option<Duration> {
        let now = Instant::now();
        self.deployments
            .iter()
            .map(|d| match d.health.peek(now) {
                Admission::Closed(wait) => Some(wait),
                _ => None,
            })
            .try_fold(Duration::MAX, |soonest, wait| wait.map(|w| soonest.min(w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::config::Config;

    fn table_of(yaml: &str) -> RouteTable {
        let config = Config::from_yaml(yaml, "t", &|_| None).unwrap();
        let upstreams: Vec<_> = config
            .providers
            .iter()
            .map(|p| Arc::new(Upstream::new(p, "http://127.0.0.1:9".parse().unwrap()).unwrap()))
            .collect();
        RouteTable::new(&config, &upstreams, None)
    }

    fn table() -> RouteTable {
        table_of(
            "providers:\n  - {name: a, kind: mock}\n  - {name: b, kind: mock}\n  - {name: c, kind: mock}\nmodels:\n  - name: m\n    aliases: [alias]\n    deployments:\n      - {provider: a, weight: 3}\n      - {provider: b, weight: 1, model: up}\n      - {provider: c, weight: 0}\n",
        )
    }

    #[test]
    fn latency_picks_the_faster_of_two_and_sometimes_the_slower() {
        let table = table_of(
            "providers:\n  - {name: a, kind: mock}\n  - {name: b, kind: mock}\nmodels:\n  - name: m\n    strategy: latency\n    deployments:\n      - {provider: a}\n      - {provider: b}\n",
        );
        let route = table.get("m").unwrap();
        route.deployments[0]
            .health
            .observe_ttfb(Duration::from_millis(50));
        route.deployments[1]
            .health
            .observe_ttfb(Duration::from_millis(5));
        let mut counts = [0u32; 2];
        for _ in 0..2000 {
            counts[route.pick(Tried::default()).unwrap()] += 1;
        }
        assert!(counts[1] > 8 * counts[0], "{counts:?}");
        assert!(counts[0] > 0, "{counts:?}");
    }

    #[test]
    fn reload_keeps_health_only_for_the_same_upstream_address() {
        let config = Config::from_yaml(
            "providers:\n  - {name: a, kind: mock}\nmodels:\n  - name: m\n    deployments: [{provider: a}]\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let at = |url: &str| -> Vec<Arc<Upstream>> {
            config
                .providers
                .iter()
                .map(|p| Arc::new(Upstream::new(p, url.parse().unwrap()).unwrap()))
                .collect()
        };
        let health = |t: &RouteTable| t.get("m").unwrap().deployments[0].health.clone();
        let old = RouteTable::new(&config, &at("http://127.0.0.1:9"), None);
        let same = RouteTable::new(&config, &at("http://127.0.0.1:9"), Some(&old));
        assert!(Arc::ptr_eq(&health(&old), &health(&same)));
        let moved = RouteTable::new(&config, &at("http://127.0.0.1:10"), Some(&same));
        assert!(!Arc::ptr_eq(&health(&same), &health(&moved)));
    }

    #[test]
    fn weights_then_fallbacks() {
        let table = table();
        let route = table.get("alias").unwrap();
        assert_eq!(route.model, "m");
        let mut counts = [0u32; 3];
        for _ in 0..4000 {
            counts[route.pick(Tried::default()).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 takes no first attempts");
        assert!((2700..3300).contains(&counts[0]), "{counts:?}");
        let mut tried = Tried::default();
        tried.mark(0);
        assert_eq!(route.pick(tried), Some(1));
        tried.mark(1);
        assert_eq!(route.pick(tried), Some(2));
        tried.mark(2);
        assert_eq!(route.pick(tried), None);
        assert_eq!(tried.count(), 3);
    }
}
