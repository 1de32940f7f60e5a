//! Quota limits as keys, users and teams store them: the one type the entities, the
//! admin API, the CLI and the gateway's quota scopes share, its validation, and the patch
//! that changes it. Adding a dimension starts here (see `docs/ARCHITECTURE.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{StoreError, entity::api_key::BudgetPeriod};

/// Quota limits of a key, a user or a team; `null` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LimitsView)]
pub struct QuotaLimits {
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
    /// Micro-USD (1 USD = 1,000,000) per `budget_period`.
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<BudgetPeriod>,
}

impl QuotaLimits {
    pub fn is_unlimited(&self) -> bool {
        *self == QuotaLimits::default()
    }

    /// Checks the values, naming the offending field.
    pub fn check(&self) -> Result<(), StoreError> {
        for (field, value) in [
            ("rpm_limit", self.rpm_limit),
            ("tpm_limit", self.tpm_limit),
            ("concurrency_limit", self.concurrency_limit),
        ] {
            if value.is_some_and(|v| v <= 0) {
                return Err(StoreError::invalid(field, "must be a positive integer"));
            }
        }
        if self.budget_micro_usd.is_some_and(|v| v < 0) {
            return Err(StoreError::invalid(
                "budget_micro_usd",
                "must not be negative",
            ));
        }
        match (self.budget_micro_usd, self.budget_period) {
            (Some(_), None) => Err(StoreError::invalid(
                "budget_period",
                "is required with budget_micro_usd: day, month or total",
            )),
            (None, Some(_)) => Err(StoreError::invalid(
                "budget_micro_usd",
                "is required with budget_period",
            )),
            _ => Ok(()),
        }
    }

    /// The limits with `changes` applied (`Some(None)` clears a limit).
    pub fn apply(&self, changes: &LimitChanges) -> QuotaLimits {
        QuotaLimits {
            rpm_limit: changes.rpm_limit.unwrap_or(self.rpm_limit),
            tpm_limit: changes.tpm_limit.unwrap_or(self.tpm_limit),
            concurrency_limit: changes.concurrency_limit.unwrap_or(self.concurrency_limit),
            budget_micro_usd: changes.budget_micro_usd.unwrap_or(self.budget_micro_usd),
            budget_period: changes.budget_period.unwrap_or(self.budget_period),
        }
    }

    /// The limits as the audit log records them.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Changes to limits: omit a field to keep it, `null` to remove it.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename = "LimitsPatch")]
#[schema(as = LimitsPatch)]
pub struct LimitChanges {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub rpm_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub tpm_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub budget_micro_usd: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BudgetPeriod>)]
    pub budget_period: Option<Option<BudgetPeriod>>,
}

impl LimitChanges {
    pub fn is_empty(&self) -> bool {
        self.rpm_limit.is_none()
            && self.tpm_limit.is_none()
            && self.concurrency_limit.is_none()
            && self.budget_micro_usd.is_none()
            && self.budget_period.is_none()
    }
}

/// For PATCH bodies: a missing field is `None` (keep), `null` is `Some(None)` (clear) and a
/// value is `Some(Some(v))` (set). Use with `#[serde(default, deserialize_with = …)]`.
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Deserialize::deserialize(de).map(Some)
}
