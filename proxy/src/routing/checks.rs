//! Active health checks (`routing.health_check`): every interval, each deployment that is
//! cooling down or being probed gets `GET {base_url}/models` with the provider's auth. An
//! answer closes its circuit at once, so a recovered upstream gets traffic back without a
//! client's request being the probe (a pause the upstream asked for with `retry-after`
//! still runs its course); a failure keeps it out a while longer.

use std::{collections::HashSet, sync::Arc, time::Instant};

use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};

use crate::{
    live::LiveConfig,
    routing::health::{DeploymentHealth, HealthState},
    upstream::Upstream,
};

/// How often the settings are looked at while checks are off.
const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct HealthChecks {
    pub live: LiveConfig,
}

async fn check(client: &reqwest::Client, upstream: &Upstream, health: &DeploymentHealth) {
    let (url, headers) = upstream.health_check();
    let mut request = client.get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(answer) if answer.status().is_success() => health.check_passed(),
        Ok(answer) => health.failed(
            Instant::now(),
            format!("health check: status {}", answer.status().as_u16()),
            None,
        ),
        Err(e) => health.failed(
            Instant::now(),
            format!(
                "health check: {}",
                if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                }
            ),
            None,
        ),
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let table = self.live.load().routes.clone();
            let wait = match table.health_check {
                None => IDLE,
                Some(settings) => {
                    let client = reqwest::Client::builder().timeout(settings.timeout).build();
                    if let Ok(client) = client {
                        let now = Instant::now();
                        let mut seen = HashSet::new();
                        let mut checks = Vec::new();
                        for d in table.models().iter().flat_map(|r| &r.deployments) {
                            // One check per deployment, however many models route to it.
                            if d.health.state(now) == HealthState::Healthy
                                || !seen.insert(Arc::as_ptr(&d.health) as usize)
                            {
                                continue;
                            }
                            checks.push(check(&client, &d.upstream, &d.health));
                        }
                        drop(seen);
                        futures_util::future::join_all(checks).await;
                    }
                    settings.interval
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
