//! Where one request is routed and which attempt it is on: the deployments tried so far,
//! the one serving now, and when a failed attempt may go again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pingora::Error;

use crate::routing::{Route, RouteDeployment, RouteTable, Tried, health::DeploymentHealth};

/// How often one request may be replayed after a dead pooled connection.
const MAX_REPLAYS: u32 = 2;
/// How soon after an attempt starts a dead connection still counts as stale rather than lost.
const REPLAY_WINDOW: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Attempts {
    /// The route table the request was admitted under (kept across reloads).
    pub table: Option<Arc<RouteTable>>,
    /// The model being tried: the one asked for, then its fallbacks in turn.
    pub route: Option<Arc<Route>>,
    /// The model asked for, once the request has moved on to a fallback.
    origin: Option<Arc<Route>>,
    /// How many of the asked model's fallbacks have been moved on to.
    fallbacks_taken: usize,
    pub tried: Tried,
    /// The health records of the deployments tried, across models: a fallback model that
    /// routes to an upstream already tried (same provider and upstream model) skips it.
    spent: Vec<Arc<DeploymentHealth>>,
    /// The deployment the quota check reserved capacity on, for the first attempt.
    pub preselected: Option<usize>,
    /// Index of the deployment of the current attempt.
    pub deployment: Option<usize>,
    pub count: u32,
    /// When the current attempt's request head went upstream.
    pub started: Option<Instant>,
    /// Replays after a pooled upstream connection turned out dead.
    pub replays: u32,
    /// Attempts made again on another deployment after a failure (of the route's `retries`).
    pub retries: u32,
    /// The current attempt's answer was judged a failure to retry (see `failover`).
    pub failing_over: bool,
    /// Why the last attempt is being retried, until the metrics take it.
    pub retried_for: Option<RetryReason>,
    /// The model moved away from and the fallback moved to, until the metrics take it.
    pub fell_back: Option<(String, String)>,
    /// The last upstream answer turned into a retry: what the client gets if no further
    /// attempt can be made after all.
    pub last_answer: Option<LastAnswer>,
    /// A half-open probe this request holds and has not reported on yet: given back when
    /// the request ends without a result from that deployment.
    pub pending_probe: Option<Arc<DeploymentHealth>>,
}

/// An upstream's retryable answer, kept in case it turns out to be the last one.
#[derive(Debug, Clone)]
pub struct LastAnswer {
    pub status: u16,
    /// The model the attempt was for (the asked one or a fallback).
    pub model: String,
    /// The pause the upstream asked for.
    pub retry_after: Option<Duration>,
    /// The provider and upstream model that answered (`openai/gpt-4o`).
    pub deployment: String,
}

/// Why an attempt went again on another deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    Status(u16),
    Timeout,
    Connect,
}

impl RetryReason {
    pub fn label(self) -> String {
        match self {
            RetryReason::Status(status) => status.to_string(),
            RetryReason::Timeout => "timeout".to_string(),
            RetryReason::Connect => "connect".to_string(),
        }
    }
}

impl Attempts {
    /// Starts an attempt on deployment `index`.
    pub fn begin(&mut self, index: usize) {
        if let Some(previous) = self.current() {
            previous.health.leave();
        }
        self.tried.mark(index);
        self.deployment = Some(index);
        self.count += 1;
        if let Some(current) = self.current() {
            current.health.enter();
            let health = current.health.clone();
            if !self.spent.iter().any(|h| Arc::ptr_eq(h, &health)) {
                self.spent.push(health);
            }
        }
    }

    /// The deployments of `route` whose upstream this request has tried already.
    fn spent_in(&self, route: &Route) -> Tried {
        let mut tried = Tried::default();
        for (i, d) in route.deployments.iter().enumerate() {
            if self.spent.iter().any(|h| Arc::ptr_eq(h, &d.health)) {
                tried.mark(i);
            }
        }
        tried
    }

    /// The asked model's fallback models not moved on to yet, in order.
    fn fallbacks_left(&self) -> impl Iterator<Item = &Arc<Route>> {
        let origin = self.origin.as_ref().or(self.route.as_ref());
        let names = origin.map_or(&[][..], |o| &o.fallbacks[..]);
        names
            .iter()
            .skip(self.fallbacks_taken)
            .filter_map(|name| self.table.as_ref()?.get(name))
    }

    /// Moves on to the next model of the asked model's `fallbacks`; `false` when none is
    /// left. The new model's deployments are untried, except upstreams tried already.
    pub fn fall_back(&mut self) -> bool {
        let (Some(origin), Some(routes)) = (
            self.origin.clone().or_else(|| self.route.clone()),
            self.table.clone(),
        ) else {
            return false;
        };
        while let Some(name) = origin.fallbacks.get(self.fallbacks_taken) {
            self.fallbacks_taken += 1;
            let Some(next) = routes.get(name) else {
                continue;
            };
            if let Some(previous) = self.current() {
                previous.health.leave();
            }
            let from = self
                .route
                .as_ref()
                .map_or_else(String::new, |r| r.model.clone());
            self.fell_back = Some((from, next.model.clone()));
            self.origin = Some(origin.clone());
            self.tried = self.spent_in(next);
            self.route = Some(next.clone());
            self.deployment = None;
            self.preselected = None;
            return true;
        }
        false
    }

    /// Whether a fallback model is left with a deployment that could take the request now.
    fn fallback_left(&self) -> bool {
        self.fallbacks_left()
            .any(|route| route.pick(self.spent_in(route)).is_some())
    }

    /// The unique id of the current attempt's deployment (what quota holds are kept by).
    pub fn current_id(&self) -> Option<usize> {
        self.current().map(|d| d.id)
    }

    /// The deployment of the current attempt.
    pub fn current(&self) -> Option<&RouteDeployment> {
        self.route.as_ref()?.deployments.get(self.deployment?)
    }

    /// Whether the current attempt's answer `status` is one to retry.
    pub fn retries_on(&self, status: u16) -> bool {
        self.table
            .as_ref()
            .is_some_and(|t| t.retry_on.contains(&status))
    }

    /// Whether a failed attempt may go to another deployment: one is left, the route's
    /// retries are not used up, and the request is within its deadline.
    pub fn may_retry(&self, started: Instant) -> bool {
        let deadline = self.table.as_ref().map_or(Duration::ZERO, |t| t.deadline);
        // The asked model's budget holds across its fallbacks.
        self.origin
            .as_ref()
            .or(self.route.as_ref())
            .is_some_and(|r| self.retries < r.retries)
            && started.elapsed() < deadline
            && (self.any_left() || self.fallback_left())
    }

    /// Records that the failed attempt goes again on another deployment.
    pub fn retrying(&mut self, reason: RetryReason) {
        self.retries += 1;
        self.retried_for = Some(reason);
    }

    /// The provider and upstream model of the current attempt (`openai/gpt-4o`).
    pub fn deployment_label(&self) -> Option<&str> {
        self.current().map(|d| d.label.as_str())
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

impl Drop for Attempts {
    /// The request ended: its attempt is no longer in flight, and a probe it never
    /// reported on is given back.
    fn drop(&mut self) {
        if let Some(current) = self.current() {
            current.health.leave();
        }
        if let Some(probe) = self.pending_probe.take() {
            probe.release_probe(Instant::now());
        }
    }
}
