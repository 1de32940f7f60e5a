//! Which scopes a request counts against — its key, the key's user and team, a JWT's
//! subject — with each one's limits as the store holds them, and the reservation's prompt
//! estimate.

use chrono::Utc;
use tollgate_core::{limits::QuotaLimits, store::entity::api_key::BudgetPeriod};

use crate::{
    auth::{client_keys::ClientKey, jwt::Subject},
    quota::{Budget, Limits, Owner, Period, Scoped},
};
use tollgate_core::config::SubjectKind;

/// A rough prompt size: about four bytes of JSON per token. Reservations need an upper
/// estimate, not a count; settlement uses the upstream's real usage.
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

/// Quota limits as the store holds them, for the period containing `now`.
pub fn limits(stored: &QuotaLimits, now: chrono::DateTime<Utc>) -> Limits {
    let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
    let budget = match (stored.budget_micro_usd, stored.budget_period) {
        (Some(limit), Some(period)) => Some(Budget::new(
            limit,
            match period {
                BudgetPeriod::Day => Period::Day,
                BudgetPeriod::Month => Period::Month,
                BudgetPeriod::Total => Period::Total,
            },
            now,
        )),
        _ => None,
    };
    Limits {
        rpm: positive(stored.rpm_limit),
        tpm: positive(stored.tpm_limit),
        concurrency: positive(stored.concurrency_limit),
        budget,
    }
}

/// The scopes a key's requests count against: the key itself, its user and its team, each
/// where it has limits.
pub fn scopes(key: &ClientKey, now: chrono::DateTime<Utc>) -> Vec<Scoped> {
    let k = &key.record.key;
    let own = k.limits();
    let mut scopes = Vec::with_capacity(3);
    let mut add = |scope: String, stored: &QuotaLimits, owner: Owner| {
        let limits = limits(stored, now);
        if !limits.is_unlimited() {
            scopes.push(Scoped {
                scope,
                limits,
                owner,
            });
        }
    };
    // The key's public id is random: its scope never collides across databases.
    add(format!("k:{}", k.public_id), &own, Owner::Key(k.id));
    if let Some(user) = k.user_id {
        add(
            format!("u:{user}"),
            &key.record.user_limits,
            Owner::User(user),
        );
    }
    if let Some(team) = k.team_id {
        add(
            format!("t:{team}"),
            &key.record.team_limits,
            Owner::Team(team),
        );
    }
    scopes
}

/// A cache hit's scopes: it counts against request rates and concurrency, spends no
/// tokens, and holds budget only when the hit costs something (`charged`).
pub fn for_cache_hit(scopes: Vec<Scoped>, charged: bool) -> Vec<Scoped> {
    scopes
        .into_iter()
        .filter_map(|mut s| {
            s.limits.tpm = None;
            if !charged {
                s.limits.budget = None;
            }
            (!s.limits.is_unlimited()).then_some(s)
        })
        .collect()
}

/// The scope of a user or team named by a JWT.
pub fn subject_scopes(subject: &Subject, now: chrono::DateTime<Utc>) -> Vec<Scoped> {
    let (scope, owner) = match subject.kind {
        SubjectKind::User => (format!("u:{}", subject.id), Owner::User(subject.id)),
        SubjectKind::Team => (format!("t:{}", subject.id), Owner::Team(subject.id)),
    };
    let limits = limits(&subject.limits, now);
    if limits.is_unlimited() {
        Vec::new()
    } else {
        vec![Scoped {
            scope,
            limits,
            owner,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_estimates_round_up() {
        assert_eq!(estimate_prompt_tokens(0), 0);
        assert_eq!(estimate_prompt_tokens(5), 2);
    }
}
