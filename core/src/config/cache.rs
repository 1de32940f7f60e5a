//! The response cache's config: `cache:` at the top (the store and a default policy) and
//! on each model (its own policy, field by field over the default).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Problem,
    units::{ByteSize, DurationText},
};

/// `cache:` at the top of the file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Bytes the in-process store may hold, least recently used entries evicted first
    /// (default `64MiB`). Used when there is no Redis (`TOLLGATE_REDIS_URL`); with Redis,
    /// entries live there, shared by every replica.
    pub max_memory: Option<ByteSize>,
    /// How long a request waits for an identical one already on its way upstream before it
    /// goes upstream itself (default `30s`; `0s` turns coalescing off).
    pub coalesce_wait: Option<DurationText>,
    /// The policy of every model that sets none of its own (off unless `enabled: true`).
    #[serde(default)]
    pub default: RawCachePolicy,
}

/// Whether and how a model's answers are cached; fields left out take `cache.default`'s.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCachePolicy {
    /// Cache this model's answers (default `false`).
    pub enabled: Option<bool>,
    /// How long an answer is served from the cache (default `1h`; a request's
    /// `cache-control: max-age` may shorten it).
    pub ttl: Option<DurationText>,
    /// Largest request body, and largest answer, that is cached (default `1MiB`).
    pub max_entry_size: Option<ByteSize>,
    /// Which endpoints are cached (default all four: `chat`, `completions`, `embeddings`,
    /// `responses`).
    pub endpoints: Option<Vec<RawCacheEndpoint>>,
    /// Whose requests share entries: `key`, `user`, `team` (default; keys without a team
    /// share per user, then per key) or `global`.
    pub scope: Option<CacheScope>,
    /// Also cache requests that sample (a `temperature` other than 0, or none given, which
    /// OpenAI treats as 1), where a repeat would get a different answer (default `false`).
    pub cache_nondeterministic: Option<bool>,
    /// What a hit costs the caller: `zero` (default), `full` (the stored answer's tokens at
    /// the model's prices) or a fraction of that, e.g. `0.1`.
    pub hit_cost: Option<RawHitCost>,
    /// Function names whose calls have side effects: a request offering any of these tools
    /// is never cached.
    pub uncached_tools: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawCacheEndpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

/// Whose requests may share a cache entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Each key its own entries.
    Key,
    /// A user's keys share.
    User,
    /// A team's keys share; a key without a team shares with its user's, then its own.
    #[default]
    Team,
    /// Every caller shares.
    Global,
}

impl CacheScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Key => "key",
            CacheScope::User => "user",
            CacheScope::Team => "team",
            CacheScope::Global => "global",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawHitCost {
    Word(RawHitCostWord),
    /// A fraction of the full cost, from 0 to 1.
    Fraction(f64),
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawHitCostWord {
    Zero,
    Full,
}

/// What a cache hit costs, as parts per million of what the stored answer's tokens cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitCost {
    pub parts_per_million: u32,
}

impl HitCost {
    pub const ZERO: HitCost = HitCost {
        parts_per_million: 0,
    };

    /// The hit's share of `full` micro-USD (rounded up, as costs are).
    pub fn of(self, full: i64) -> i64 {
        let scaled = i128::from(full) * i128::from(self.parts_per_million);
        i64::try_from((scaled + 999_999) / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// The store and coalescing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_memory: u64,
    pub coalesce_wait: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_memory: 64 << 20,
            coalesce_wait: Duration::from_secs(30),
        }
    }
}

/// A model's cache policy, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_entry_size: usize,
    pub chat: bool,
    pub completions: bool,
    pub embeddings: bool,
    pub responses: bool,
    pub scope: CacheScope,
    pub nondeterministic: bool,
    pub hit_cost: HitCost,
    pub uncached_tools: Vec<String>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            enabled: false,
            ttl: Duration::from_secs(3600),
            max_entry_size: 1 << 20,
            chat: true,
            completions: true,
            embeddings: true,
            responses: true,
            scope: CacheScope::Team,
            nondeterministic: false,
            hit_cost: HitCost::ZERO,
            uncached_tools: Vec::new(),
        }
    }
}

/// Largest entry the config accepts: entries are held whole in memory.
const MAX_ENTRY_SIZE: u64 = 64 << 20;

pub fn settings(raw: &RawCache, problems: &mut Vec<Problem>) -> CacheSettings {
    let defaults = CacheSettings::default();
    let max_memory = raw.max_memory.map_or(defaults.max_memory, |b| b.0);
    CacheSettings {
        max_memory,
        coalesce_wait: raw
            .coalesce_wait
            .as_ref()
            .map_or(defaults.coalesce_wait, |d| d.0)
            .min(Duration::from_secs(600)),
    }
    .checked(problems)
}

impl CacheSettings {
    fn checked(self, problems: &mut Vec<Problem>) -> Self {
        if self.max_memory < 1 << 20 {
            problems.push(Problem::at("cache.max_memory", "must be at least 1MiB"));
        }
        self
    }
}

/// `raw` over `base`, checked; problems are reported under `path`.
pub fn policy(
    raw: &RawCachePolicy,
    base: &CachePolicy,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CachePolicy {
    let mut policy = base.clone();
    if let Some(enabled) = raw.enabled {
        policy.enabled = enabled;
    }
    if let Some(ttl) = &raw.ttl {
        if ttl.0 < Duration::from_secs(1) {
            problems.push(Problem::at(format!("{path}.ttl"), "must be at least 1s"));
        }
        policy.ttl = ttl.0;
    }
    if let Some(size) = raw.max_entry_size {
        if size.0 == 0 || size.0 > MAX_ENTRY_SIZE {
            problems.push(Problem::at(
                format!("{path}.max_entry_size"),
                "must be between 1B and 64MiB",
            ));
        }
        policy.max_entry_size = usize::try_from(size.0.min(MAX_ENTRY_SIZE)).unwrap_or(usize::MAX);
    }
    if let Some(endpoints) = &raw.endpoints {
        let has = |e: RawCacheEndpoint| endpoints.contains(&e);
        policy.chat = has(RawCacheEndpoint::Chat);
        policy.completions = has(RawCacheEndpoint::Completions);
        policy.embeddings = has(RawCacheEndpoint::Embeddings);
        policy.responses = has(RawCacheEndpoint::Responses);
    }
    if let Some(scope) = raw.scope {
        policy.scope = scope;
    }
    if let Some(nondeterministic) = raw.cache_nondeterministic {
        policy.nondeterministic = nondeterministic;
    }
    if let Some(cost) = raw.hit_cost {
        policy.hit_cost = match cost {
            RawHitCost::Word(RawHitCostWord::Zero) => HitCost::ZERO,
            RawHitCost::Word(RawHitCostWord::Full) => HitCost {
                parts_per_million: 1_000_000,
            },
            RawHitCost::Fraction(f) if (0.0..=1.0).contains(&f) => HitCost {
                parts_per_million: (f * 1e6).round() as u32,
            },
            RawHitCost::Fraction(_) => {
                problems.push(Problem::at(
                    format!("{path}.hit_cost"),
                    "must be zero, full, or a fraction from 0 to 1",
                ));
                HitCost::ZERO
            }
        };
    }
    if let Some(tools) = &raw.uncached_tools {
        policy.uncached_tools = tools.clone();
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_cost_rounds_up_its_share() {
        let tenth = HitCost {
            parts_per_million: 100_000,
        };
        assert_eq!(tenth.of(1_000), 100);
        assert_eq!(tenth.of(1_001), 101);
        assert_eq!(HitCost::ZERO.of(5_000), 0);
        let full = HitCost {
            parts_per_million: 1_000_000,
        };
        assert_eq!(full.of(5_000), 5_000);
    }

    #[test]
    fn a_model_policy_overrides_the_default_field_by_field() {
        let mut problems = Vec::new();
        let base = policy(
            &RawCachePolicy {
                enabled: Some(true),
                scope: Some(CacheScope::Key),
                ..Default::default()
            },
            &CachePolicy::default(),
            "cache.default",
            &mut problems,
        );
        let own = policy(
            &RawCachePolicy {
                ttl: Some(DurationText(Duration::from_secs(60))),
                endpoints: Some(vec![RawCacheEndpoint::Embeddings]),
                hit_cost: Some(RawHitCost::Fraction(1.5)),
                ..Default::default()
            },
            &base,
            "models[0].cache",
            &mut problems,
        );
        assert!(own.enabled && own.scope == CacheScope::Key);
        assert_eq!(own.ttl, Duration::from_secs(60));
        assert!(own.embeddings && !own.chat && !own.completions && !own.responses);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "models[0].cache.hit_cost");
    }
}
