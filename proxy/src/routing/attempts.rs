//! Where one request is routed and which attempt it is on: the deployments tried so far,
//! the one serving now, and when a failed attempt may go again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pingora::Error;

use crate::routing::{Route, RouteDeployment, Tried};

/// How often one request may be replayed after a dead pooled connection.
const MAX_REPLAYS: u32 = 2;
/// How soon after an attempt starts a dead connection still counts as stale rather than lost.
const REPLAY_WINDOW: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Attempts {
    pub route: Option<Arc<Route>>,
    pub tried: Tried,
    /// The deployment the quota check reserved capacity on, for the first attempt.
    pub preselected: Option<usize>,
    /// Index of the deployment of the current attempt.
    pub deployment: Option<usize>,
    pub count: u32,
    /// When the current attempt's request head went upstream.
    pub started: Option<Instant>,
    /// Replays after a pooled upstream connection turned out dead.
    pub replays: u32,
}

impl Attempts {
    /// Starts an attempt on deployment `index`.
    pub fn begin(&mut self, index: usize) {
        self.tried.mark(index);
        self.deployment = Some(index);
        self.count += 1;
    }

    /// The deployment of the current attempt.
    pub fn current(&self) -> Option<&RouteDeployment> {
        self.route.as_ref()?.deployments.get(self.deployment?)
    }

    /// Whether a deployment is left that this request has not tried.
    pub fn any_left(&self) -> bool {
        self.route
            .as_ref()
            .is_some_and(|r| r.pick(self.tried).is_some())
    }

    /// The provider of the current attempt, for logs and metrics.
    pub fn provider_name(&self) -> &str {
        self.current().map_or("", |d| d.upstream.name.as_str())
    }

    pub fn model_name(&self) -> &str {
        self.route.as_ref().map_or("", |r| r.model.as_str())
    }

    /// Decides whether an attempt that failed after connecting goes again. A pooled
    /// connection that turned out dead before anything reached the client can be replayed:
    /// the gateway holds the whole body (Pingora's default refuses it for POST). Only a
    /// failure right after sending: a connection that dies while the upstream is generating
    /// must not be replayed (the generation would be paid for twice).
    pub fn decide_replay(&mut self, e: &mut Error, answered: bool, client_reused: bool) {
        let soon = self.started.is_some_and(|t| t.elapsed() < REPLAY_WINDOW);
        if !answered && soon && self.replays < MAX_REPLAYS {
            e.retry.decide_reuse(client_reused);
            if e.retry() {
                self.replays += 1;
                if let Some(index) = self.deployment {
                    self.tried.unmark(index);
                }
            }
        } else {
            e.set_retry(false);
        }
    }
}
