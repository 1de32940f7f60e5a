//! What metering is told about a request when it ends, gathered from its context.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tollgate_core::{
    config::{Pricing, SubjectKind},
    usage::Usage,
};

use tollgate_core::config::HitCost;

use crate::{
    auth::Principal,
    cache::Outcome,
    context::RequestCtx,
    downstream::endpoints::Endpoint,
    metering::{BodyCharge, event_id},
    quota::limiter::Settlement,
};

/// Everything known about a request when it ends.
pub struct Finished {
    pub event_id: String,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
    pub key_id: Option<i64>,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub model: String,
    pub deployment: String,
    pub status: u16,
    pub latency_ms: u32,
    pub ttft_ms: Option<u32>,
    /// What the upstream reported.
    pub usage: Option<Usage>,
    /// Whether an upstream answered with success (else nothing was generated or billed).
    pub upstream_ok: bool,
    pub streamed: bool,
    pub endpoint: Endpoint,
    /// The request as sent upstream, for estimating its prompt when usage is missing;
    /// empty when not needed, or when the bodies queued already hold the metering's share
    /// of memory (then its length alone is used, see [`Finished::body_len`]).
    pub request_body: Bytes,
    /// The length of the request as sent upstream.
    pub body_len: usize,
    /// Accounts for `request_body` among the bodies queued (see `metering::BodyBudget`).
    pub body_charge: Option<BodyCharge>,
    pub content_events: u64,
    pub response_bytes: u64,
    pub pricing: Option<Pricing>,
    /// Quota reservations to settle once the usage is known.
    pub settlements: Vec<Settlement>,
    /// The error the gateway answered with, if it answered with one: code and message.
    pub error: Option<(&'static str, String)>,
    /// What the response cache did for it.
    pub cache: Option<Outcome>,
    /// A hit's cost policy (its usage is the stored answer's).
    pub hit_cost: Option<HitCost>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl Finished {
    /// The record of an authenticated proxy request (answered, refused or aborted) that
    /// ended with `status` (0: no response was sent).
    pub fn of(ctx: &mut RequestCtx, endpoint: Endpoint, status: u16) -> Finished {
        let (key_id, user_id, team_id) = match &ctx.caller {
            Some(Principal::Key(k)) => (Some(k.id()), k.record.key.user_id, k.record.key.team_id),
            Some(Principal::Jwt(s)) => match s.kind {
                SubjectKind::User => (None, Some(s.id), None),
                SubjectKind::Team => (None, None, Some(s.id)),
            },
            _ => (None, None, None),
        };
        let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let model = match (&ctx.route.route, &ctx.request.probe.model) {
            (Some(route), _) => route.model.clone(),
            (None, Some(asked)) => asked.clone(),
            (None, None) => String::new(),
        };
        let started = ctx.timing.started;
        let hit = ctx.cache.hit.as_ref();
        let usage = match hit {
            Some(hit) => Some(Usage {
                prompt_tokens: hit.entry.prompt_tokens,
                completion_tokens: hit.entry.completion_tokens,
                ..Usage::default()
            }),
            None => ctx.response.usage(),
        };
        Finished {
            event_id: event_id(),
            request_id: ctx.id.clone(),
            occurred_at: chrono::Utc::now(),
            key_id,
            user_id,
            team_id,
            model,
            deployment: if hit.is_some() {
                "cache".to_string()
            } else {
                ctx.route.provider_name().to_string()
            },
            status,
            latency_ms: millis(started.elapsed()),
            ttft_ms: ctx
                .timing
                .first_byte_at
                .map(|t| millis(t.duration_since(started))),
            usage,
            upstream_ok: ctx.response.upstream_ok,
            streamed: ctx.response.streamed,
            endpoint,
            // Only an estimate reads the prompt: a request with the upstream's usage does not
            // keep its body while its event waits.
            request_body: if usage.is_some() {
                bytes::Bytes::new()
            } else {
                ctx.request.body.clone()
            },
            body_len: ctx.request.body.len(),
            body_charge: None,
            content_events: ctx.response.content_events(),
            response_bytes: ctx.response.bytes,
            pricing: ctx.route.route.as_ref().and_then(|r| r.pricing),
            settlements: ctx.holds.settlements(ctx.route.current_id()),
            error: ctx
                .error
                .as_ref()
                .map(|e| (e.code().unwrap_or("error"), e.to_string())),
            cache: ctx.cache.outcome,
            hit_cost: hit.map(|h| h.hit_cost),
        }
    }
}
