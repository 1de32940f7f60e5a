//! Per-request state carried through the Pingora phases, in parts named for what they
//! hold; each part belongs to the module that fills it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tollgate_core::body::RequestProbe;

use crate::{
    auth::Principal,
    cache::CacheState,
    downstream::{endpoints::Endpoint, respond::Stamp},
    error::GatewayError,
    metering::{Finished, Meter, scan::ResponseWatch},
    quota::holds::Holds,
    routing::attempts::Attempts,
};

pub struct RequestCtx {
    /// The client's `x-request-id` when sane, else a new one.
    pub id: String,
    /// Who is calling, once authenticated.
    pub caller: Option<Principal>,
    /// What the client asked for.
    pub request: Incoming,
    /// Where the request is routed, and which attempt it is on.
    pub route: Attempts,
    /// What the request holds in quota.
    pub holds: Holds,
    /// What the response scan has seen.
    pub response: ResponseWatch,
    pub timing: Timing,
    /// Whether this request is counted in the in-flight gauge.
    pub in_flight: bool,
    /// Whether this request is counted in the streams-in-flight gauge.
    pub stream_in_flight: bool,
    /// An error the gateway answered itself.
    pub error: Option<GatewayError>,
    /// Where the request's usage goes; taken once it is recorded, so a request dropped
    /// before `logging` (cut at the end of the shutdown grace period) is recorded then.
    pub meter: Option<Arc<Meter>>,
    /// The response cache's part: the outcome, a hit, or a miss's answer being gathered.
    pub cache: CacheState,
}

/// The request as read in `request_filter`.
#[derive(Default)]
pub struct Incoming {
    pub endpoint: Option<Endpoint>,
    /// The request body as it goes upstream before a deployment renames the model (with
    /// `stream_options.include_usage` added where the gateway asked for usage).
    pub client_body: Bytes,
    /// The body of the current attempt (model renamed for the deployment if needed).
    pub body: Bytes,
    pub probe: RequestProbe,
    /// The client itself asked for stream usage (`stream_options.include_usage`), as
    /// opposed to the gateway asking on its behalf.
    pub client_wants_usage: bool,
    /// The body translated for each Anthropic deployment of the model, by deployment id
    /// (made once, when admission checked that it translates).
    pub translated: Vec<(usize, Bytes)>,
}

impl Incoming {
    /// The body for an Anthropic deployment: the chat completion as a Messages request.
    /// Admission checked that it translates.
    pub fn anthropic_body(
        &self,
        deployment: usize,
        upstream_model: &str,
        options: &tollgate_core::config::AnthropicOptions,
    ) -> Result<Bytes, GatewayError> {
        if let Some((_, body)) = self.translated.iter().find(|(id, _)| *id == deployment) {
            return Ok(body.clone());
        }
        // A fallback model's deployment: translated now.
        translate_for_anthropic(&self.client_body, upstream_model, options).map(Bytes::from)
    }

    /// The body for a deployment that knows the model as `upstream_model`.
    pub fn body_for(&self, upstream_model: &str) -> Bytes {
        match (&self.probe.model, &self.probe.model_span) {
            (Some(asked), Some(span)) if asked != upstream_model => {
                tollgate_core::body::replace_model(&self.client_body, span, upstream_model)
            }
            _ => self.client_body.clone(),
        }
    }
}

pub struct Timing {
    /// When the request's first byte arrived (its head is read and parsed in the gateway
    /// too), or when its context was made if that is unknown.
    pub started: Instant,
    /// When the first body byte went to the client.
    pub first_byte_at: Option<Instant>,
    /// Since when the current attempt waits on its upstream (connecting, sending, until its
    /// response head or its failure).
    upstream_since: Option<Instant>,
    /// Time spent waiting on upstreams by the attempts that ended.
    upstream_wait: Duration,
    /// The gateway's own time up to the response head, once it went out.
    pub overhead: Option<Duration>,
}

impl Timing {
    fn new() -> Self {
        Timing {
            started: crate::downstream::connection::head_arrived().unwrap_or_else(Instant::now),
            first_byte_at: None,
            upstream_since: None,
            upstream_wait: Duration::ZERO,
            overhead: None,
        }
    }

    /// An attempt starts waiting on its upstream.
    pub fn upstream_began(&mut self) {
        self.upstream_ended();
        self.upstream_since = Some(Instant::now());
    }

    /// The attempt's upstream answered (its head) or failed.
    pub fn upstream_ended(&mut self) {
        if let Some(since) = self.upstream_since.take() {
            self.upstream_wait += since.elapsed();
        }
    }

    /// Time spent in the gateway so far: all of it but the waits on upstreams.
    pub fn own_time(&self) -> Duration {
        let waiting = self.upstream_since.map_or(Duration::ZERO, |s| s.elapsed());
        self.started
            .elapsed()
            .saturating_sub(self.upstream_wait + waiting)
    }

    /// Fixes the overhead as of now (the response head goes out) and returns it.
    pub fn settle_overhead(&mut self) -> Duration {
        let overhead = self.overhead.unwrap_or_else(|| self.own_time());
        self.overhead = Some(overhead);
        overhead
    }
}

/// `x-tollgate-overhead-ms`: milliseconds with microsecond precision.
pub fn overhead_header(overhead: Duration) -> String {
    format!("{:.3}", overhead.as_secs_f64() * 1e3)
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            id: String::new(),
            caller: None,
            request: Incoming::default(),
            route: Attempts::default(),
            holds: Holds::default(),
            response: ResponseWatch::default(),
            timing: Timing::new(),
            in_flight: false,
            stream_in_flight: false,
            error: None,
            meter: None,
            cache: CacheState::default(),
        }
    }

    /// The id and overhead the gateway's own response carries (fixing the overhead).
    pub fn stamp(&mut self) -> Stamp<'_> {
        let overhead = self.timing.settle_overhead();
        Stamp {
            request_id: &self.id,
            overhead,
            anthropic: self.request.endpoint.is_some_and(Endpoint::is_anthropic),
        }
    }

    /// Records the request's usage event (once) if it was an authenticated proxy request.
    pub fn meter(&mut self, status: u16) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        if let (Some(_), Some(endpoint)) = (&self.caller, self.request.endpoint) {
            meter.record(Finished::of(self, endpoint, status));
        }
    }
}

impl Drop for RequestCtx {
    /// A request that never reached `logging` — its task dropped when the shutdown grace
    /// period ended, say — is metered now, as far as it got: billed by what the upstream
    /// sent (estimated where its usage never came).
    fn drop(&mut self) {
        if self.meter.is_some() {
            tracing::debug!(request_id = %self.id, "metering a request cut off before it ended");
            let status = self.response.status;
            self.meter(status);
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

/// Translates a chat completion body for an Anthropic deployment, or names the parameter
/// that cannot be sent.
pub fn translate_for_anthropic(
    body: &[u8],
    upstream_model: &str,
    options: &tollgate_core::config::AnthropicOptions,
) -> Result<Vec<u8>, GatewayError> {
    tollgate_core::anthropic::request::translate(
        body,
        &tollgate_core::anthropic::request::Options {
            model: upstream_model,
            default_max_tokens: options.max_tokens,
            drop_unsupported: options.drop_unsupported,
        },
    )
    .map(|t| t.body)
    .map_err(|r| GatewayError::UnsupportedParameter {
        param: r.param,
        message: r.message,
    })
}
