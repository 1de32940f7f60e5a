//! Metric handles resolved once, not per request: a labelled metric's look-up hashes its
//! label values and takes the family's lock, and a finished request touches six of them.
//! Each deployment keeps its own handles (its model and provider are fixed), filled on
//! first use so that `/metrics` shows only series that happened.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter};

use crate::{downstream::endpoints::Endpoint, metrics::Metrics};

/// Status labels: the statuses the gateway answers with, then classes for the rest.
const STATUS_LABELS: [&str; 17] = [
    "0", "200", "400", "401", "403", "404", "405", "413", "429", "500", "502", "503", "504", "2xx",
    "3xx", "4xx", "5xx",
];

/// The label of a response status (0: no response was sent).
pub fn status_label(status: u16) -> &'static str {
    STATUS_LABELS[status_slot(status)]
}

fn status_slot(status: u16) -> usize {
    match status {
        0 => 0,
        200 => 1,
        400 => 2,
        401 => 3,
        403 => 4,
        404 => 5,
        405 => 6,
        413 => 7,
        429 => 8,
        500 => 9,
        502 => 10,
        503 => 11,
        504 => 12,
        s if s < 300 => 13,
        s if s < 400 => 14,
        s if s < 500 => 15,
        _ => 16,
    }
}

/// One deployment's series: its model (the configured name) and provider are in every
/// label set below.
pub struct DeploymentMetrics {
    model: String,
    provider: String,
    requests: [[OnceLock<IntCounter>; STATUS_LABELS.len()]; Endpoint::ALL.len()],
    duration: [OnceLock<Histogram>; Endpoint::ALL.len()],
    first_byte: OnceLock<Histogram>,
    /// Prompt, completion.
    tokens: [OnceLock<IntCounter>; 2],
    /// New, reused.
    connections: [OnceLock<IntCounter>; 2],
}

impl DeploymentMetrics {
    pub fn new(model: &str, provider: &str) -> Self {
        DeploymentMetrics {
            model: model.to_owned(),
            provider: provider.to_owned(),
            requests: [const { [const { OnceLock::new() }; STATUS_LABELS.len()] };
                Endpoint::ALL.len()],
            duration: [const { OnceLock::new() }; Endpoint::ALL.len()],
            first_byte: OnceLock::new(),
            tokens: [const { OnceLock::new() }; 2],
            connections: [const { OnceLock::new() }; 2],
        }
    }

    pub fn requests(&self, m: &Metrics, endpoint: Endpoint, status: u16) -> &IntCounter {
        let slot = status_slot(status);
        self.requests[endpoint.index()][slot].get_or_init(|| {
            m.requests.with_label_values(&[
                endpoint.as_str(),
                &self.model,
                &self.provider,
                STATUS_LABELS[slot],
            ])
        })
    }

    pub fn duration(&self, m: &Metrics, endpoint: Endpoint) -> &Histogram {
        self.duration[endpoint.index()].get_or_init(|| {
            m.duration
                .with_label_values(&[endpoint.as_str(), &self.model])
        })
    }

    pub fn first_byte(&self, m: &Metrics) -> &Histogram {
        self.first_byte.get_or_init(|| {
            m.upstream_first_byte
                .with_label_values(&[&self.model, &self.provider])
        })
    }

    pub fn tokens(&self, m: &Metrics, completion: bool) -> &IntCounter {
        let kind = if completion { "completion" } else { "prompt" };
        self.tokens[usize::from(completion)].get_or_init(|| {
            m.tokens
                .with_label_values(&[&self.model, &self.provider, kind])
        })
    }

    pub fn connections(&self, m: &Metrics, reused: bool) -> &IntCounter {
        let label = if reused { "true" } else { "false" };
        self.connections[usize::from(reused)].get_or_init(|| {
            m.upstream_connections
                .with_label_values(&[&self.provider, label])
        })
    }
}

/// The overhead histogram of each endpoint, and of requests with none ("other").
#[derive(Default)]
pub struct OverheadHandles([OnceLock<Histogram>; Endpoint::ALL.len() + 1]);

impl OverheadHandles {
    pub fn get(&self, m: &Metrics, endpoint: Option<Endpoint>) -> &Histogram {
        let slot = endpoint.map_or(Endpoint::ALL.len(), Endpoint::index);
        self.0[slot].get_or_init(|| {
            m.overhead
                .with_label_values(&[endpoint.map_or("other", Endpoint::as_str)])
        })
    }
}

/// Where a request's quotas were checked: the label of `tollgate_quota_check_seconds`.
#[derive(Clone, Copy)]
pub enum QuotaCheck {
    /// This replica's leased slices.
    Lease,
    /// The shared store (Redis).
    Shared,
    /// The in-process store.
    Local,
}

/// The quota-check histogram of each store.
#[derive(Default)]
pub struct QuotaCheckHandles([OnceLock<Histogram>; 3]);

impl QuotaCheckHandles {
    pub fn get(&self, m: &Metrics, store: QuotaCheck) -> &Histogram {
        let (slot, label) = match store {
            QuotaCheck::Lease => (0, "lease"),
            QuotaCheck::Shared => (1, "shared"),
            QuotaCheck::Local => (2, "local"),
        };
        self.0[slot].get_or_init(|| m.quota_check.with_label_values(&[label]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_label() {
        assert_eq!(status_label(0), "0");
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(429), "429");
        assert_eq!(status_label(201), "2xx");
        assert_eq!(status_label(302), "3xx");
        assert_eq!(status_label(422), "4xx");
        assert_eq!(status_label(501), "5xx");
        for (slot, label) in STATUS_LABELS.iter().enumerate().take(13) {
            assert_eq!(status_slot(label.parse().unwrap()), slot);
        }
    }

    #[test]
    fn every_endpoint_has_its_own_slot() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
