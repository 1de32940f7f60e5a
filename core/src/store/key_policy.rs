//! What a member's own keys may have at most: the models and per-key limits an admin set on
//! the member's user and on each of their teams (`allowed_models`, `key_limits`), a limit
//! not set there falling back to the owner's own limit of that dimension. A key a member
//! creates gets at most these — a field left out takes the ceiling, never "unlimited" — and
//! a member's change to a key may only tighten it, within them. Admins are not bound.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::{
    limits::{LimitChanges, QuotaLimits},
    store::{
        StoreError,
        entity::{api_key::BudgetPeriod, team, team_member, user},
    },
};

/// An owner's policy for its members' keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyPolicy {
    /// The models a member's key may allow; `None`: any.
    pub allowed_models: Option<Vec<String>>,
    /// The most each of a member's keys may have; `null`: no ceiling of its own.
    pub key_limits: QuotaLimits,
}

/// Changes to a policy: `allowed_models` omitted keeps it, `null` clears it.
#[derive(Debug, Clone, Default)]
pub struct PolicyChanges {
    pub allowed_models: Option<Option<Vec<String>>>,
    pub key_limits: LimitChanges,
}

impl PolicyChanges {
    pub fn is_empty(&self) -> bool {
        self.allowed_models.is_none() && self.key_limits.is_empty()
    }
}

/// A key a member may not have, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Exceeds {
    pub field: &'static str,
    pub message: String,
}

fn exceeds(field: &'static str, message: impl Into<String>) -> Exceeds {
    Exceeds {
        field,
        message: message.into(),
    }
}

impl KeyPolicy {
    /// Reads the policy columns (JSON text) an entity stores.
    pub fn from_columns(allowed_models: Option<&str>, key_limits: Option<&str>) -> Self {
        KeyPolicy {
            allowed_models: allowed_models.and_then(|j| serde_json::from_str(j).ok()),
            key_limits: key_limits
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
        }
    }

    /// The columns to store: (`allowed_models`, `key_limits`).
    pub fn to_columns(&self) -> (Option<String>, Option<String>) {
        (
            self.allowed_models
                .as_ref()
                .and_then(|m| serde_json::to_string(m).ok()),
            (!self.key_limits.is_unlimited())
                .then(|| serde_json::to_string(&self.key_limits).ok())
                .flatten(),
        )
    }

    /// The policy with `changes` applied, checked.
    pub fn apply(&self, changes: &PolicyChanges) -> Result<KeyPolicy, StoreError> {
        let key_limits = self.key_limits.apply(&changes.key_limits);
        key_limits.check()?;
        let allowed_models = match &changes.allowed_models {
            Some(models) => models.clone(),
            None => self.allowed_models.clone(),
        };
        if let Some(models) = &allowed_models
            && models.iter().any(|m| m.trim().is_empty())
        {
            return Err(StoreError::invalid(
                "allowed_models",
                "model names must not be empty",
            ));
        }
        Ok(KeyPolicy {
            allowed_models,
            key_limits,
        })
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The ceilings of an owner whose own limits are `own`: its key limits, else its own.
    fn ceilings(&self, own: &QuotaLimits) -> KeyPolicy {
        let k = &self.key_limits;
        let budget = if k.budget_micro_usd.is_some() {
            (k.budget_micro_usd, k.budget_period)
        } else {
            (own.budget_micro_usd, own.budget_period)
        };
        KeyPolicy {
            allowed_models: self.allowed_models.clone(),
            key_limits: QuotaLimits {
                rpm_limit: k.rpm_limit.or(own.rpm_limit),
                tpm_limit: k.tpm_limit.or(own.tpm_limit),
                concurrency_limit: k.concurrency_limit.or(own.concurrency_limit),
                budget_micro_usd: budget.0,
                budget_period: budget.1,
            },
        }
    }

    /// Both policies at once: the models both allow, the lower of each ceiling.
    fn and(self, other: KeyPolicy) -> KeyPolicy {
        let lower = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (a, b) = (self.key_limits, other.key_limits);
        // Budgets of different periods do not compare: the first (the user's) stands.
        let budget = match (a.budget_micro_usd, b.budget_micro_usd) {
            (Some(x), Some(y)) if a.budget_period == b.budget_period => {
                (Some(x.min(y)), a.budget_period)
            }
            (Some(_), _) => (a.budget_micro_usd, a.budget_period),
            (None, _) => (b.budget_micro_usd, b.budget_period),
        };
        KeyPolicy {
            allowed_models: match (self.allowed_models, other.allowed_models) {
                (Some(a), Some(b)) => Some(a.into_iter().filter(|m| b.contains(m)).collect()),
                (a, b) => a.or(b),
            },
            key_limits: QuotaLimits {
                rpm_limit: lower(a.rpm_limit, b.rpm_limit),
                tpm_limit: lower(a.tpm_limit, b.tpm_limit),
                concurrency_limit: lower(a.concurrency_limit, b.concurrency_limit),
                budget_micro_usd: budget.0,
                budget_period: budget.1,
            },
        }
    }

    /// A new key's models and limits within these ceilings: what it asks for if that fits,
    /// a ceiling where it asks for nothing.
    pub fn fit_new(
        &self,
        models: Option<Vec<String>>,
        limits: QuotaLimits,
    ) -> Result<(Option<Vec<String>>, QuotaLimits), Exceeds> {
        let models = self.models_within(models, None)?;
        let c = &self.key_limits;
        let limits = QuotaLimits {
            rpm_limit: within("rpm_limit", limits.rpm_limit, c.rpm_limit)?,
            tpm_limit: within("tpm_limit", limits.tpm_limit, c.tpm_limit)?,
            concurrency_limit: within(
                "concurrency_limit",
                limits.concurrency_limit,
                c.concurrency_limit,
            )?,
            ..self.budget_within(limits, None)?
        };
        Ok((models, limits))
    }

    /// Whether a member may change a key whose models and limits are now `current` as
    /// `changes` and `models` say: only to tighten it, within these ceilings.
    pub fn check_change(
        &self,
        current_models: Option<Vec<String>>,
        current: &QuotaLimits,
        models: Option<Option<Vec<String>>>,
        changes: &LimitChanges,
    ) -> Result<(), Exceeds> {
        if let Some(models) = models {
            self.models_within(models, current_models)?;
        }
        let after = current.apply(changes);
        let c = &self.key_limits;
        if changes.rpm_limit.is_some() {
            within_or_set("rpm_limit", after.rpm_limit, c.rpm_limit, current.rpm_limit)?;
        }
        if changes.tpm_limit.is_some() {
            within_or_set("tpm_limit", after.tpm_limit, c.tpm_limit, current.tpm_limit)?;
        }
        if changes.concurrency_limit.is_some() {
            within_or_set(
                "concurrency_limit",
                after.concurrency_limit,
                c.concurrency_limit,
                current.concurrency_limit,
            )?;
        }
        if changes.budget_micro_usd.is_some() || changes.budget_period.is_some() {
            let kept = self.budget_within(after, Some(current))?;
            if kept.budget_micro_usd != after.budget_micro_usd {
                return Err(exceeds(
                    "budget_micro_usd",
                    "members may not remove a key's budget",
                ));
            }
        }
        Ok(())
    }

    /// A key's models within these (and, for a change, within what it has now).
    fn models_within(
        &self,
        asked: Option<Vec<String>>,
        current: Option<Vec<String>>,
    ) -> Result<Option<Vec<String>>, Exceeds> {
        let bounds: Vec<&Vec<String>> = [self.allowed_models.as_ref(), current.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let Some(asked) = asked else {
            // Every model: only where nothing bounds it; a new key takes the ceiling.
            return match (self.allowed_models.clone(), current.is_some()) {
                (_, true) => Err(exceeds(
                    "allowed_models",
                    "members may not widen a key to every model",
                )),
                (Some(ceiling), false) => Ok(Some(ceiling)),
                (None, false) => Ok(None),
            };
        };
        if let Some(model) = asked.iter().find(|m| bounds.iter().any(|b| !b.contains(m))) {
            return Err(exceeds(
                "allowed_models",
                format!("`{model}` is not among the models this key may be given"),
            ));
        }
        Ok(Some(asked))
    }

    /// The key's budget within the ceiling's (and, for a change, not above what it has).
    fn budget_within(
        &self,
        limits: QuotaLimits,
        current: Option<&QuotaLimits>,
    ) -> Result<QuotaLimits, Exceeds> {
        let c = &self.key_limits;
        let (Some(ceiling), Some(period)) = (c.budget_micro_usd, c.budget_period) else {
            if let Some(now) = current.and_then(|c| c.budget_micro_usd)
                && limits.budget_micro_usd.is_none_or(|b| b > now)
            {
                return Err(exceeds(
                    "budget_micro_usd",
                    format!("members may only lower this key's budget ({now})"),
                ));
            }
            return Ok(limits);
        };
        match (limits.budget_micro_usd, limits.budget_period) {
            (None, _) if current.is_some() => Err(exceeds(
                "budget_micro_usd",
                "members may not remove a key's budget",
            )),
            (None, _) => Ok(QuotaLimits {
                budget_micro_usd: Some(ceiling),
                budget_period: Some(period),
                ..limits
            }),
            (Some(_), p) if p != Some(period) => Err(exceeds(
                "budget_period",
                format!("must be {} for this key", period_name(period)),
            )),
            (Some(b), _) if b > ceiling => Err(exceeds(
                "budget_micro_usd",
                format!("at most {ceiling} for this key"),
            )),
            _ => Ok(limits),
        }
    }
}

fn period_name(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Day => "day",
        BudgetPeriod::Month => "month",
        BudgetPeriod::Total => "total",
    }
}

/// A new key's value of one limit: as asked if within the ceiling, the ceiling if not asked.
fn within(
    field: &'static str,
    asked: Option<i64>,
    ceiling: Option<i64>,
) -> Result<Option<i64>, Exceeds> {
    match (asked, ceiling) {
        (Some(v), Some(c)) if v > c => Err(exceeds(field, format!("at most {c} for this key"))),
        (None, Some(c)) => Ok(Some(c)),
        (asked, _) => Ok(asked),
    }
}

/// A changed limit: not above the ceiling nor above what the key has now, and not removed
/// where either bounds it.
fn within_or_set(
    field: &'static str,
    after: Option<i64>,
    ceiling: Option<i64>,
    current: Option<i64>,
) -> Result<(), Exceeds> {
    let bound = match (ceiling, current) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match (after, bound) {
        (None, Some(_)) => Err(exceeds(field, "members may not remove this limit")),
        (Some(v), Some(b)) if v > b => Err(exceeds(
            field,
            format!("members may only lower it, to at most {b}"),
        )),
        _ => Ok(()),
    }
}

/// The ceilings for keys that member `user` makes: their user's policy and each of their
/// teams', together.
pub async fn for_member<C: ConnectionTrait>(
    db: &C,
    user: &user::Model,
) -> Result<KeyPolicy, StoreError> {
    let mut policy =
        KeyPolicy::from_columns(user.allowed_models.as_deref(), user.key_limits.as_deref())
            .ceilings(&user.limits());
    let team_ids: Vec<i64> = team_member::Entity::find()
        .filter(team_member::Column::UserId.eq(user.id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.team_id)
        .collect();
    if !team_ids.is_empty() {
        for team in team::Entity::find()
            .filter(team::Column::Id.is_in(team_ids))
            .all(db)
            .await?
        {
            let own =
                KeyPolicy::from_columns(team.allowed_models.as_deref(), team.key_limits.as_deref())
                    .ceilings(&team.limits());
            policy = policy.and(own);
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(models: Option<&[&str]>, rpm: Option<i64>) -> KeyPolicy {
        KeyPolicy {
            allowed_models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            key_limits: QuotaLimits {
                rpm_limit: rpm,
                ..QuotaLimits::default()
            },
        }
    }

    #[test]
    fn a_new_key_takes_the_ceilings_it_does_not_ask_for() {
        let p = policy(Some(&["a", "b"]), Some(100));
        let (models, limits) = p.fit_new(None, QuotaLimits::default()).unwrap();
        assert_eq!(models, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(limits.rpm_limit, Some(100));
        let (models, limits) = p
            .fit_new(
                Some(vec!["a".into()]),
                QuotaLimits {
                    rpm_limit: Some(10),
                    ..QuotaLimits::default()
                },
            )
            .unwrap();
        assert_eq!(
            (models, limits.rpm_limit),
            (Some(vec!["a".into()]), Some(10))
        );
        let over = p.fit_new(
            None,
            QuotaLimits {
                rpm_limit: Some(101),
                ..QuotaLimits::default()
            },
        );
        assert_eq!(over.unwrap_err().field, "rpm_limit");
        let other = p.fit_new(Some(vec!["c".into()]), QuotaLimits::default());
        assert_eq!(other.unwrap_err().field, "allowed_models");
        // No policy: as asked.
        let open = KeyPolicy::default();
        assert_eq!(
            open.fit_new(None, QuotaLimits::default()).unwrap(),
            (None, QuotaLimits::default())
        );
    }

    #[test]
    fn a_members_change_may_only_tighten() {
        let p = KeyPolicy::default();
        let current = QuotaLimits {
            rpm_limit: Some(5),
            ..QuotaLimits::default()
        };
        let set = |rpm: Option<i64>| LimitChanges {
            rpm_limit: Some(rpm),
            ..LimitChanges::default()
        };
        assert!(p.check_change(None, &current, None, &set(Some(3))).is_ok());
        assert!(p.check_change(None, &current, None, &set(Some(6))).is_err());
        assert!(p.check_change(None, &current, None, &set(None)).is_err());
        // Models: only narrowed.
        let models = Some(vec!["a".to_string()]);
        assert!(
            p.check_change(
                models.clone(),
                &current,
                Some(None),
                &LimitChanges::default()
            )
            .is_err()
        );
        assert!(
            p.check_change(
                models.clone(),
                &current,
                Some(Some(vec!["b".into()])),
                &LimitChanges::default()
            )
            .is_err()
        );
        assert!(
            p.check_change(
                None,
                &current,
                Some(Some(vec!["b".into()])),
                &LimitChanges::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn policies_combine_to_the_tighter() {
        let user = policy(Some(&["a", "b"]), Some(100));
        let team = policy(Some(&["b", "c"]), Some(50));
        let both = user.and(team);
        assert_eq!(both.allowed_models, Some(vec!["b".to_string()]));
        assert_eq!(both.key_limits.rpm_limit, Some(50));
        // The owner's own limit is the ceiling where the policy has none.
        let own = QuotaLimits {
            tpm_limit: Some(1000),
            ..QuotaLimits::default()
        };
        assert_eq!(
            KeyPolicy::default().ceilings(&own).key_limits.tpm_limit,
            Some(1000)
        );
    }
}
