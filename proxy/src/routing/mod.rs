//! The route table: model names and aliases to their deployments, and the weighted choice
//! of which deployment serves a request (untried ones first, weight-0 ones as fallbacks).
//! `attempts` follows one request's attempts; `choice` picks each attempt's deployment
//! together with its quota.

pub mod attempts;
pub mod choice;

use std::{collections::HashMap, sync::Arc};

use tollgate_core::config::{Config, Pricing};

use crate::{
    quota::{Limits, Owner, Scoped},
    upstream::Upstream,
};

pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
}

pub struct Route {
    /// The configured model name (what metrics and logs report).
    pub model: String,
    pub deployments: Vec<RouteDeployment>,
    pub pricing: Option<Pricing>,
}

pub struct RouteDeployment {
    pub upstream: Arc<Upstream>,
    pub upstream_model: String,
    pub weight: u32,
    /// Requests and tokens per minute allowed to this deployment, all clients together.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl RouteDeployment {
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
    /// Builds the table; `upstreams` is indexed like `config.providers`.
    pub fn new(config: &Config, upstreams: &[Arc<Upstream>]) -> Self {
        let mut routes = HashMap::new();
        for model in &config.models {
            let route = Arc::new(Route {
                model: model.name.clone(),
                deployments: model
                    .deployments
                    .iter()
                    .map(|d| RouteDeployment {
                        upstream: upstreams[d.provider].clone(),
                        upstream_model: d.upstream_model.clone(),
                        weight: d.weight,
                        rpm: d.rpm,
                        tpm: d.tpm,
                    })
                    .collect(),
                pricing: model.pricing,
            });
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                routes.insert(name.clone(), route.clone());
            }
        }
        RouteTable { routes }
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }
}

impl Route {
    /// The next deployment to try, or `None` when all have been tried.
    pub fn pick(&self, tried: Tried) -> Option<usize> {
        let open = || {
            self.deployments
                .iter()
                .enumerate()
                .filter(move |(i, d)| d.weight > 0 && !tried.contains(*i))
        };
        let total: u64 = open().map(|(_, d)| u64::from(d.weight)).sum();
        if total > 0 {
            let mut ticket = fastrand::u64(..total);
            for (i, d) in open() {
                if ticket < u64::from(d.weight) {
                    return Some(i);
                }
                ticket -= u64::from(d.weight);
            }
        }
        (0..self.deployments.len()).find(|&i| !tried.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::config::Config;

    fn table() -> RouteTable {
        let config = Config::from_yaml(
            "providers:\n  - {name: a, kind: mock}\n  - {name: b, kind: mock}\n  - {name: c, kind: mock}\nmodels:\n  - name: m\n    aliases: [alias]\n    deployments:\n      - {provider: a, weight: 3}\n      - {provider: b, weight: 1, model: up}\n      - {provider: c, weight: 0}\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let upstreams: Vec<_> = config
            .providers
            .iter()
            .map(|p| Arc::new(Upstream::new(p, "http://127.0.0.1:9".parse().unwrap()).unwrap()))
            .collect();
        RouteTable::new(&config, &upstreams)
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
