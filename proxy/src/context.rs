//! Per-request state carried through the Pingora phases.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use tollgate_core::{
    body::RequestProbe,
    sse::SseScanner,
    usage::{JsonUsageWindow, Usage},
};

use crate::{
    auth::Principal,
    endpoints::Endpoint,
    error::GatewayError,
    limiter::Admitted,
    routing::{Route, Tried},
};

pub struct RequestCtx {
    pub started: Instant,
    /// Who sent the request, once authenticated.
    pub principal: Option<Principal>,
    /// The quota reservation to settle when the request ends.
    pub admitted: Option<Admitted>,
    /// The deployment whose own limits `admitted` includes.
    pub reserved_deployment: Option<usize>,
    /// Reservations on the limits of deployments tried after the first, by deployment.
    pub fallback_holds: Vec<(usize, Admitted)>,
    /// Why no deployment was left to fall back to, when the last ones were at their limits.
    pub fallback_refusal: Option<GatewayError>,
    pub request_id: String,
    pub endpoint: Option<Endpoint>,
    /// The request body as the client sent it.
    pub client_body: Bytes,
    /// The body of the current attempt (model renamed for the deployment if needed).
    pub body: Bytes,
    pub probe: RequestProbe,
    pub route: Option<Arc<Route>>,
    pub tried: Tried,
    /// The deployment the quota check reserved capacity on, for the first attempt.
    pub preselected: Option<usize>,
    /// Index of the deployment of the current attempt.
    pub deployment: Option<usize>,
    pub attempts: u32,
    /// When the current attempt's request head went upstream.
    pub attempt_started: Option<Instant>,
    /// Replays after a pooled upstream connection turned out dead.
    pub replays: u32,
    /// Whether this request is counted in the in-flight gauge.
    pub in_flight: bool,
    /// An error the gateway answered itself.
    pub error: Option<GatewayError>,
    /// When the upstream's response head arrived.
    pub upstream_headers_at: Option<Instant>,
    /// When the first body byte went to the client.
    pub first_byte_at: Option<Instant>,
    pub response: ResponseScan,
    /// The gateway asked the upstream for stream usage the client did not ask for, and
    /// removes that event from the stream.
    pub strip_usage: bool,
    /// Response body bytes that passed.
    pub response_bytes: u64,
    /// The answer is an event stream.
    pub streamed: bool,
    /// The upstream answered with a success status.
    pub upstream_ok: bool,
    /// Stream events with generated text, kept when the scan ends.
    pub content_events: u64,
}

/// How the response body is watched for usage as it passes.
pub enum ResponseScan {
    None,
    Stream(Box<SseScanner>),
    /// A JSON body, watched through a bounded window for its `usage`.
    Json(Box<JsonUsageWindow>),
    Done(Option<Usage>),
}

impl ResponseScan {
    /// Stream events that carried generated text.
    pub fn content_events(&self) -> u64 {
        match self {
            ResponseScan::Stream(scanner) => scanner.content_events(),
            _ => 0,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            ResponseScan::None => None,
            ResponseScan::Stream(scanner) => scanner.usage(),
            ResponseScan::Json(window) => window.usage(),
            ResponseScan::Done(usage) => *usage,
        }
    }
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            principal: None,
            admitted: None,
            reserved_deployment: None,
            fallback_holds: Vec::new(),
            fallback_refusal: None,
            request_id: String::new(),
            endpoint: None,
            client_body: Bytes::new(),
            body: Bytes::new(),
            probe: RequestProbe::default(),
            route: None,
            tried: Tried::default(),
            preselected: None,
            deployment: None,
            attempts: 0,
            attempt_started: None,
            replays: 0,
            in_flight: false,
            error: None,
            upstream_headers_at: None,
            first_byte_at: None,
            response: ResponseScan::None,
            strip_usage: false,
            response_bytes: 0,
            streamed: false,
            upstream_ok: false,
            content_events: 0,
        }
    }

    /// The provider of the current attempt, for logs and metrics.
    pub fn provider_name(&self) -> &str {
        match (&self.route, self.deployment) {
            (Some(route), Some(i)) => &route.deployments[i].upstream.name,
            _ => "",
        }
    }

    pub fn model_name(&self) -> &str {
        self.route.as_ref().map_or("", |r| r.model.as_str())
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
