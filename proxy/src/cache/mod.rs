//! The response cache: exact-match answers of cached models, looked up in `request_filter`
//! before any token or budget is reserved, and stored once a miss's answer has come back
//! whole. Hits are metered (marked `cache_hit`, at the policy's `hit_cost`); a store that
//! fails is a miss, never an error.

pub mod coalesce;
pub mod entry;
pub mod hit;
pub mod metrics;
pub mod replay;
pub mod store;
pub mod template;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::HeaderMap;
use tollgate_core::{
    cache_key::{self, KeyParts},
    config::{CachePolicy, CacheScope, CacheSettings, HitCost, SubjectKind},
};

use crate::{
    auth::Principal,
    backend::pubsub::Listener,
    cache::{
        coalesce::{Flight, Flights, Join, follow},
        entry::{Entry, Kind},
        metrics::CacheMetrics,
        store::{MemoryStore, RedisCache, Store},
        template::Template,
    },
    downstream::endpoints::Endpoint,
};

/// What the cache did for a request (its `x-tollgate-cache` header and usage event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the cache: no upstream request.
    Hit,
    /// Looked up, not found (or not servable as asked): went upstream.
    Miss,
    /// The model is cached, but not this request: the client asked so (`cache-control:
    /// no-cache` / `no-store`, `x-tollgate-cache: bypass`), or it is not cacheable (it
    /// samples, asks for several choices, offers a flagged tool, is too large).
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

/// What the client's headers ask of the cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub bypass: bool,
    /// `cache-control: max-age`: serve no older entry, and store for no longer.
    pub max_age: Option<Duration>,
}

impl Directives {
    pub fn of(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        if headers
            .get("x-tollgate-cache")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bypass"))
        {
            directives.bypass = true;
        }
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let lower = directive.to_ascii_lowercase();
                if lower == "no-cache" || lower == "no-store" {
                    directives.bypass = true;
                } else if let Some(seconds) = lower.strip_prefix("max-age=") {
                    match seconds.trim_matches('"').parse::<u64>() {
                        Ok(0) => directives.bypass = true,
                        Ok(s) => directives.max_age = Some(Duration::from_secs(s)),
                        Err(_) => {}
                    }
                }
            }
        }
        directives
    }
}

/// A hit: the stored answer and what it costs.
pub struct Hit {
    pub entry: Arc<Entry>,
    pub hit_cost: HitCost,
    /// Served the answer of an identical request that was in flight.
    pub coalesced: bool,
}

/// A miss whose answer may be stored: gathered as it passes to the client.
pub struct Capture {
    key: [u8; 32],
    ttl: Duration,
    limit: usize,
    body: Vec<u8>,
    /// The answer did not fit `max_entry_size`: it is not stored.
    overflowed: bool,
    stream: bool,
    model: String,
    key_id: i64,
    /// The first of identical misses: its followers wait for this answer.
    flight: Option<Flight>,
    cache: Arc<ResponseCache>,
}

impl Capture {
    /// Keeps a copy of a chunk on its way to the client.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.body.len() + chunk.len() > self.limit {
            self.overflowed = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// The answer ended: stores it if it is whole — a 200 with usage; a stream that ended
    /// with `[DONE]` — and serves it to the requests that waited for it.
    pub fn finish(self, status: u16, usage: Option<(u64, u64)>) {
        let Capture {
            key,
            ttl,
            body,
            overflowed,
            stream,
            model,
            key_id,
            flight,
            cache,
            ..
        } = self;
        let Some((prompt_tokens, completion_tokens)) = usage else {
            return;
        };
        if status != 200 || overflowed || body.is_empty() {
            return;
        }
        if stream && !body.trim_ascii_end().ends_with(b"data: [DONE]") {
            return;
        }
        let stored_at = now_secs();
        let entry = Arc::new(Entry {
            kind: if stream { Kind::Sse } else { Kind::Json },
            stored_at,
            expires_at: stored_at.saturating_add(ttl.as_secs()),
            prepared: Default::default(),
            prompt_tokens,
            completion_tokens,
            key_id,
            model,
            body: Bytes::from(body),
        });
        if let Some(flight) = flight {
            flight.stored(entry.clone());
        }
        cache
            .metrics
            .stores
            .with_label_values(&[&entry.model])
            .inc();
        tokio::spawn(async move { cache.put(key, entry, ttl).await });
    }
}

/// The cache's part of a request, in its context.
#[derive(Default)]
pub struct CacheState {
    pub outcome: Option<Outcome>,
    pub hit: Option<Hit>,
    pub capture: Option<Capture>,
}

/// What the cache makes of a request.
pub enum Verdict {
    /// The model is not cached (or not on this endpoint).
    Off,
    Bypass,
    Hit(Hit),
    Miss(Capture),
}

/// A request as the cache sees it.
pub struct Asked<'a> {
    pub policy: &'a CachePolicy,
    pub endpoint: Endpoint,
    pub caller: Option<&'a Principal>,
    /// The model as the client named it (an alias stays an alias).
    pub asked_model: &'a str,
    /// The configured model it resolved to.
    pub model: &'a str,
    pub body: &'a [u8],
    pub stream: bool,
    pub directives: Directives,
}

pub struct ResponseCache {
    store: Store,
    /// With Redis: the entries this replica stored or served lately, kept in process for
    /// at most [`NEAR_LIFETIME`] (never past their expiry), so a repeated hit needs no round
    /// trip. Purges reach every replica's copy through Redis (see `purge_listener`).
    near: Option<MemoryStore>,
    flights: Arc<Flights>,
    coalesce_wait: Duration,
    pub metrics: CacheMetrics,
    /// After a store error, calls are skipped until this time (ms since the Unix epoch): an
    /// unreachable Redis then costs each request nothing instead of a timeout.
    resting_until: AtomicU64,
}

/// How long the cache rests after a store error.
const REST_AFTER_ERROR: Duration = Duration::from_secs(2);
/// The longest an in-process copy of a Redis entry is served before Redis is asked again:
/// it bounds how stale a copy can be should a purge announcement be lost.
const NEAR_LIFETIME: Duration = Duration::from_secs(30);

fn now_secs() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

impl ResponseCache {
    /// In Redis when `redis` is given (client and key prefix), else in process.
    pub fn new(
        settings: &CacheSettings,
        redis: Option<(fred::clients::Client, &str)>,
    ) -> prometheus::Result<Arc<ResponseCache>> {
        let (store, near) = match redis {
            Some((client, prefix)) => (
                Store::Redis(RedisCache::new(client, prefix)),
                Some(MemoryStore::new(settings.max_memory)),
            ),
            None => (Store::Memory(MemoryStore::new(settings.max_memory)), None),
        };
        Ok(Arc::new(ResponseCache {
            store,
            near,
            flights: Arc::new(Flights::default()),
            coalesce_wait: settings.coalesce_wait,
            metrics: CacheMetrics::register()?,
            resting_until: AtomicU64::new(0),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn resting(&self) -> bool {
        self.resting_until.load(Ordering::Relaxed) > now_ms()
    }

    fn failed(&self, operation: &str, error: &str) {
        self.metrics.errors.with_label_values(&[operation]).inc();
        let until = now_ms() + REST_AFTER_ERROR.as_millis() as u64;
        if self.resting_until.swap(until, Ordering::Relaxed) <= now_ms() {
            tracing::warn!(
                "the response cache's store failed ({operation}: {error}); requests go \
                 upstream, and the store is tried again in {REST_AFTER_ERROR:?}"
            );
        }
    }

    /// Bytes the in-process store (or the in-process copies of Redis entries) holds.
    fn memory_bytes(&self) -> Option<u64> {
        match &self.near {
            Some(near) => Some(near.bytes()),
            None => self.store.bytes(),
        }
    }

    fn measure(&self) {
        if let Some(bytes) = self.memory_bytes() {
            self.metrics
                .bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Keeps an in-process copy of a Redis entry, for no longer than it lives in Redis.
    fn keep_near(&self, key: [u8; 32], entry: &Arc<Entry>) {
        if let Some(near) = &self.near {
            let left = Duration::from_secs(entry.expires_at.saturating_sub(now_secs()));
            let evicted = near.put(key, entry.clone(), left.min(NEAR_LIFETIME));
            self.metrics.evictions.inc_by(evicted);
        }
    }

    async fn put(&self, key: [u8; 32], entry: Arc<Entry>, ttl: Duration) {
        self.keep_near(key, &entry);
        if !self.resting() {
            match self.store.put(key, entry, ttl).await {
                Ok(evicted) => self.metrics.evictions.inc_by(evicted),
                Err(e) => self.failed("put", &e),
            }
        }
        self.measure();
    }

    /// The entry under `key`: the in-process copy, else the store's.
    async fn lookup(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        if let Some(entry) = self.near.as_ref().and_then(|near| near.get(key)) {
            return Some(entry);
        }
        if self.resting() {
            return None;
        }
        match self.store.get(key).await {
            Ok(Some(entry)) => {
                self.keep_near(*key, &entry);
                Some(entry)
            }
            Ok(None) => None,
            Err(e) => {
                self.failed("get", &e);
                None
            }
        }
    }

    /// Drops the in-process copies `which` matches (all of them when Redis was away and
    /// announcements may have been missed).
    pub fn forget_near(&self, which: &store::Purge) {
        if let Some(near) = &self.near {
            near.purge(which);
            self.measure();
        }
    }

    /// Drops here the copies any replica's admin API purges (with Redis; `None` without).
    pub fn purge_listener(self: &Arc<Self>) -> Option<Listener> {
        let Store::Redis(redis) = &self.store else {
            return None;
        };
        let (cache, again) = (self.clone(), self.clone());
        Some(Listener {
            channel: redis.purges_channel(),
            on_message: Box::new(move |text| {
                // A purge that cannot be read drops every copy.
                let which = text
                    .and_then(|text| serde_json::from_str::<store::Purge>(text).ok())
                    .unwrap_or_default();
                cache.forget_near(&which);
            }),
            on_gap: Box::new(move || again.forget_near(&store::Purge::default())),
        })
    }

    /// Looks the request up; on a miss, returns what gathers its answer for storing.
    pub async fn consult(self: &Arc<Self>, asked: &Asked<'_>) -> Verdict {
        let policy = asked.policy;
        if !policy.enabled || !serves(policy, asked.endpoint) {
            return Verdict::Off;
        }
        let verdict = self.decide(asked).await;
        let result = match &verdict {
            Verdict::Off => return verdict,
            Verdict::Bypass => Outcome::Bypass,
            Verdict::Hit(_) => Outcome::Hit,
            Verdict::Miss(_) => Outcome::Miss,
        };
        self.metrics
            .requests
            .with_label_values(&[asked.model, result.as_str()])
            .inc();
        verdict
    }

    async fn decide(self: &Arc<Self>, asked: &Asked<'_>) -> Verdict {
        let policy = asked.policy;
        let key_opted_out =
            matches!(asked.caller, Some(Principal::Key(k)) if !k.record.key.cache_enabled);
        if asked.directives.bypass || key_opted_out {
            return Verdict::Bypass;
        }
        let scope = scope_of(policy.scope, asked.caller);
        let parts = KeyParts {
            scope: &scope,
            endpoint: asked.endpoint.as_str(),
            model: asked.asked_model,
            samples: asked.endpoint != Endpoint::Embeddings,
        };
        let Ok(key) = cache_key::key(&parts, asked.body, policy) else {
            return Verdict::Bypass;
        };
        let max_age = asked.directives.max_age;
        let usable = |entry: &Entry| {
            servable(entry, asked.stream, asked.endpoint)
                && max_age.is_none_or(|m| now_secs().saturating_sub(entry.stored_at) <= m.as_secs())
        };
        let hit = |entry, coalesced| {
            Verdict::Hit(Hit {
                entry,
                hit_cost: policy.hit_cost,
                coalesced,
            })
        };
        if let Some(entry) = self.lookup(&key).await
            && usable(&entry)
        {
            return hit(entry, false);
        }
        let flight = if self.coalesce_wait.is_zero() {
            None
        } else {
            match self.flights.join(key) {
                Join::Leader(flight) => Some(flight),
                Join::Follower(waiting) => {
                    if let Some(entry) = follow(waiting, self.coalesce_wait).await
                        && usable(&entry)
                    {
                        self.metrics
                            .coalesced
                            .with_label_values(&[asked.model])
                            .inc();
                        return hit(entry, true);
                    }
                    None
                }
            }
        };
        let key_id = match asked.caller {
            Some(Principal::Key(k)) => k.id(),
            _ => 0,
        };
        let ttl = max_age.map_or(policy.ttl, |m| m.min(policy.ttl));
        Verdict::Miss(Capture {
            key,
            ttl,
            limit: policy.max_entry_size,
            body: Vec::new(),
            overflowed: false,
            stream: asked.stream,
            model: asked.model.to_string(),
            key_id,
            flight,
            cache: self.clone(),
        })
    }
}

/// The admin API's purge and statistics.
impl tollgate_admin::CacheControl for ResponseCache {
    fn purge(
        &self,
        which: tollgate_admin::CachePurge,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let which = store::Purge {
                model: which.model,
                key_id: which.key_id,
            };
            let purged = self.store.purge(&which).await?;
            self.forget_near(&which);
            if let Store::Redis(redis) = &self.store {
                redis.announce(&which).await?;
            }
            self.measure();
            Ok(purged)
        })
    }

    fn holding(
        &self,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<tollgate_admin::CacheHolding, String>> + Send + '_>,
    > {
        Box::pin(async move {
            let holding = self.store.holding().await?;
            Ok(tollgate_admin::CacheHolding {
                store: self.store.kind(),
                entries: holding.entries,
                bytes: holding.bytes,
                by_model: holding.by_model,
            })
        })
    }
}

fn serves(policy: &CachePolicy, endpoint: Endpoint) -> bool {
    match endpoint {
        Endpoint::ChatCompletions => policy.chat,
        Endpoint::Completions => policy.completions,
        Endpoint::Embeddings => policy.embeddings,
        Endpoint::Responses => policy.responses,
        Endpoint::Messages | Endpoint::CountTokens => false,
    }
}

/// Whether an entry can answer the request as asked: a JSON answer serves both kinds (told
/// as a stream for chat and completions), a stored stream serves streams only.
fn servable(entry: &Entry, stream: bool, endpoint: Endpoint) -> bool {
    match (entry.kind, stream) {
        (Kind::Json, false) | (Kind::Sse, true) => true,
        (Kind::Json, true) => matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions),
        (Kind::Sse, false) => false,
    }
}

/// Who shares entries with the caller under `scope`: the narrowest owner there is when the
/// scope's own is missing (a key without a team shares with its user's keys, then alone).
pub fn scope_of(scope: CacheScope, caller: Option<&Principal>) -> String {
    match (scope, caller) {
        (CacheScope::Global, _) => "*".to_string(),
        (_, Some(Principal::Key(key))) => {
            let k = &key.record.key;
            match (scope, k.team_id, k.user_id) {
                (CacheScope::Team, Some(team), _) => format!("t:{team}"),
                (CacheScope::Team | CacheScope::User, _, Some(user)) => format!("u:{user}"),
                _ => format!("k:{}", k.id),
            }
        }
        (_, Some(Principal::Jwt(subject))) => match subject.kind {
            SubjectKind::User => format!("u:{}", subject.id),
            SubjectKind::Team => format!("t:{}", subject.id),
        },
        (_, Some(Principal::Master) | None) => "master".to_string(),
    }
}

/// A hit's body as the client asked for it, from the entry's templates (made by the first
/// hit that needs each).
pub fn answer(entry: &Entry, endpoint: Endpoint, stream: bool, include_usage: bool) -> Bytes {
    let identity = replay::Identity::new();
    let usage = (entry.prompt_tokens, entry.completion_tokens);
    let template = match (entry.kind, stream) {
        (Kind::Json, false) => Some(
            entry
                .prepared
                .json
                .get_or_init(|| Template::of_json(&entry.body)),
        ),
        (Kind::Json, true) => entry
            .prepared
            .stream
            .get_or_init(|| {
                replay::stream_from_json(&entry.body, endpoint, &identity)
                    .map(|told| Template::of_stream(&told, &entry.model, usage))
            })
            .as_ref(),
        (Kind::Sse, _) => entry
            .prepared
            .stream
            .get_or_init(|| Some(Template::of_stream(&entry.body, &entry.model, usage)))
            .as_ref(),
    };
    template.map_or_else(
        || entry.body.clone(),
        |t| t.render(&identity, include_usage),
    )
}

/// `age`: whole seconds since the entry was stored.
pub fn age(entry: &Entry) -> u64 {
    now_secs().saturating_sub(entry.stored_at)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn directives_read_cache_control_and_the_bypass_header() {
        let of = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            Directives::of(&headers)
        };
        assert_eq!(of(&[]), Directives::default());
        assert!(of(&[("cache-control", "no-cache")]).bypass);
        assert!(of(&[("cache-control", "private, No-Store")]).bypass);
        assert!(of(&[("x-tollgate-cache", "BYPASS")]).bypass);
        assert!(of(&[("cache-control", "max-age=0")]).bypass);
        let aged = of(&[("cache-control", "max-age=30")]);
        assert_eq!(
            (aged.bypass, aged.max_age),
            (false, Some(Duration::from_secs(30)))
        );
        assert_eq!(
            of(&[("cache-control", "max-age=soon")]),
            Directives::default()
        );
    }

    #[test]
    fn entries_serve_the_requests_they_can_answer() {
        let entry = |kind| Entry {
            kind,
            stored_at: 0,
            expires_at: u64::MAX,
            prepared: Default::default(),
            prompt_tokens: 0,
            completion_tokens: 0,
            key_id: 0,
            model: String::new(),
            body: Bytes::new(),
        };
        let (json, sse) = (entry(Kind::Json), entry(Kind::Sse));
        assert!(servable(&json, false, Endpoint::Embeddings));
        assert!(servable(&json, true, Endpoint::ChatCompletions));
        assert!(!servable(&json, true, Endpoint::Responses));
        assert!(servable(&sse, true, Endpoint::Responses));
        assert!(!servable(&sse, false, Endpoint::ChatCompletions));
    }

    #[test]
    fn scopes_fall_back_to_the_narrower_owner() {
        assert_eq!(scope_of(CacheScope::Global, None), "*");
        assert_eq!(
            scope_of(CacheScope::Team, Some(&Principal::Master)),
            "master"
        );
    }
}
