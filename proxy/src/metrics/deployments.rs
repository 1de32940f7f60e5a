//! Each deployment's state as this replica sees it, read from the current route table at
//! every scrape: circuit state, requests in flight and the moving time to first byte.
//! Labelled by deployment (`provider/upstream-model`): as few as the config has.

use std::time::Instant;

use prometheus::{
    GaugeVec, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::{live::LiveConfig, routing::health::HealthState};

pub struct DeploymentCollector {
    live: LiveConfig,
    state: IntGaugeVec,
    in_flight: IntGaugeVec,
    ttfb: GaugeVec,
}

impl DeploymentCollector {
    pub fn new(live: LiveConfig) -> prometheus::Result<Self> {
        Ok(DeploymentCollector {
            live,
            state: IntGaugeVec::new(
                Opts::new(
                    "tollgate_deployment_state",
                    "1 for a deployment's current state (healthy, cooling_down, probing), 0 for the others",
                ),
                &["deployment", "state"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "tollgate_deployment_in_flight",
                    "Attempts in flight to each deployment on this replica",
                ),
                &["deployment"],
            )?,
            ttfb: GaugeVec::new(
                Opts::new(
                    "tollgate_deployment_ttfb_seconds",
                    "Moving average of each deployment's time to first byte (0 until measured)",
                ),
                &["deployment"],
            )?,
        })
    }
}

impl Collector for DeploymentCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.state.desc();
        descs.extend(self.in_flight.desc());
        descs.extend(self.ttfb.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Rebuilt from the table each time: a reload may have removed deployments.
        self.state.reset();
        self.in_flight.reset();
        self.ttfb.reset();
        let now = Instant::now();
        let table = self.live.load().routes.clone();
        for route in table.models() {
            for d in &route.deployments {
                let name = format!("{}/{}", d.upstream.name, d.upstream_model);
                let current = d.health.state(now);
                for state in [
                    HealthState::Healthy,
                    HealthState::CoolingDown,
                    HealthState::Probing,
                ] {
                    self.state
                        .with_label_values(&[name.as_str(), state.as_str()])
                        .set(i64::from(state == current));
                }
                self.in_flight
                    .with_label_values(&[name.as_str()])
                    .set(i64::try_from(d.health.in_flight()).unwrap_or(i64::MAX));
                self.ttfb
                    .with_label_values(&[name.as_str()])
                    .set(d.health.ttfb_micros() as f64 / 1_000_000.0);
            }
        }
        let mut families = self.state.collect();
        families.extend(self.in_flight.collect());
        families.extend(self.ttfb.collect());
        families
    }
}
