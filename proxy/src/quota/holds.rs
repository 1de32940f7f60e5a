//! What one request holds in quota: the reservation on the client's scopes (with the first
//! deployment's own limits, where it has any), holds on the limits of deployments tried
//! after it, and how each is settled when the request ends.

use crate::{
    error::GatewayError,
    quota::limiter::{Admitted, Settlement},
};

#[derive(Default)]
pub struct Holds {
    /// The reservation on the client's scopes.
    pub admitted: Option<Admitted>,
    /// The deployment (its table-wide id) whose own limits `admitted` includes.
    pub reserved_deployment: Option<usize>,
    /// Reservations on the limits of deployments tried after the first, by deployment id.
    pub fallbacks: Vec<(usize, Admitted)>,
    /// Why no deployment was left to fall back to, when the last ones were at their limits.
    pub fallback_refusal: Option<GatewayError>,
}

impl Holds {
    /// Whether capacity on deployment `index`'s (a table-wide id) own limits is held already.
    pub fn holds_deployment(&self, index: usize) -> bool {
        self.reserved_deployment == Some(index) || self.fallbacks.iter().any(|(i, _)| *i == index)
    }

    /// The reservations, each settled to the real usage only where it was served: the
    /// client's scopes always, a deployment's limits only for the deployment that answered.
    pub fn settlements(&mut self, served: Option<usize>) -> Vec<Settlement> {
        let mut out = Vec::with_capacity(1 + self.fallbacks.len());
        if let Some(mut admitted) = self.admitted.take() {
            if self.reserved_deployment.is_some()
                && self.reserved_deployment != served
                && let Some(elsewhere) = admitted.split_deployment()
            {
                out.push(Settlement {
                    admitted: elsewhere,
                    used: false,
                });
            }
            out.push(Settlement {
                admitted,
                used: true,
            });
        }
        for (index, admitted) in self.fallbacks.drain(..) {
            out.push(Settlement {
                admitted,
                used: Some(index) == served,
            });
        }
        out
    }
}
