//! Quota limits as keys, users and teams store them: the one type the entities, the
//! admin API, the CLI and the gateway's quota scopes share, its validation, and the patch
//! that changes it. Adding a dimension starts here (see `docs/ARCHITECTURE.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{StoreError, entity::api_key::BudgetPeriod};

/// Quota limits of a key, a user or a team; `null` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
// Named as the admin API's schema names it, in serde's messages too.
#[serde(deny_unknown_fields, expecting = "struct LimitsPatch")]
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

/// Declares a struct with the quota limit fields appended to its own fields, for the few
/// structs that must carry them as fields rather than nest or flatten [`QuotaLimits`]. Each
/// form also gets its conversion, so a new dimension is added here and nowhere else:
///
/// - `request`: a request body's fields (serde's `flatten` would lose a field's name from
///   validation errors), with `limits()`;
/// - `columns`: a table's limit columns (sea-orm maps fields to columns), as `request` and
///   with `ActiveModel::set_limits()`;
/// - `patch`: a PATCH body's fields (omitted = keep, `null` = clear), with
///   `limit_changes()`; used from crates that name this one `tollgate_core`;
/// - `flags`: the CLI's `--rpm`, `--tpm`, `--concurrency`, `--budget-micro-usd` and
///   `--budget-period`, with `limits()`.
///
/// `columns` and `request` name `BudgetPeriod` as the calling module imports it (sea-orm's
/// derive reads field types as written). The limit fields come after the struct's own
/// fields and before those of an optional `then { … }` group that follows the struct, so
/// the fields keep their order on the wire and in messages. Every group ends with a comma.
#[macro_export]
macro_rules! with_quota_limits {
    (columns $(#[$meta:meta])* $vis:vis struct $name:ident { $($own:tt)* } $(then { $($then:tt)* })?) => {
        $crate::with_quota_limits! { request
            $(#[$meta])* $vis struct $name { $($own)* } $(then { $($then)* })?
        }

        impl ActiveModel {
            pub fn set_limits(&mut self, limits: $crate::limits::QuotaLimits) {
                self.rpm_limit = sea_orm::Set(limits.rpm_limit);
                self.tpm_limit = sea_orm::Set(limits.tpm_limit);
                self.concurrency_limit = sea_orm::Set(limits.concurrency_limit);
                self.budget_micro_usd = sea_orm::Set(limits.budget_micro_usd);
                self.budget_period = sea_orm::Set(limits.budget_period);
            }
        }
    };
    (request $(#[$meta:meta])* $vis:vis struct $name:ident { $($own:tt)* } $(then { $($then:tt)* })?) => {
        $(#[$meta])*
        $vis struct $name {
            $($own)*
            /// Requests per minute.
            pub rpm_limit: Option<i64>,
            /// Tokens per minute.
            pub tpm_limit: Option<i64>,
            /// Concurrent requests.
            pub concurrency_limit: Option<i64>,
            /// Spend limit in micro-USD (1 USD = 1,000,000) per `budget_period`.
            pub budget_micro_usd: Option<i64>,
            pub budget_period: Option<BudgetPeriod>,
            $($($then)*)?
        }

        impl $name {
            /// The quota limits these fields hold.
            pub fn limits(&self) -> $crate::limits::QuotaLimits {
                $crate::limits::QuotaLimits {
                    rpm_limit: self.rpm_limit,
                    tpm_limit: self.tpm_limit,
                    concurrency_limit: self.concurrency_limit,
                    budget_micro_usd: self.budget_micro_usd,
                    budget_period: self.budget_period,
                }
            }
        }
    };
    (patch $(#[$meta:meta])* $vis:vis struct $name:ident { $($own:tt)* } $(then { $($then:tt)* })?) => {
        $(#[$meta])*
        $vis struct $name {
            $($own)*
            /// `null` removes the limit; omit to keep.
            #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
            #[schema(value_type = Option<i64>)]
            pub rpm_limit: Option<Option<i64>>,
            #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
            #[schema(value_type = Option<i64>)]
            pub tpm_limit: Option<Option<i64>>,
            #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
            #[schema(value_type = Option<i64>)]
            pub concurrency_limit: Option<Option<i64>>,
            #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
            #[schema(value_type = Option<i64>)]
            pub budget_micro_usd: Option<Option<i64>>,
            #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
            #[schema(value_type = Option<$crate::store::entity::api_key::BudgetPeriod>)]
            pub budget_period: Option<Option<$crate::store::entity::api_key::BudgetPeriod>>,
            $($($then)*)?
        }

        impl $name {
            /// The changes to quota limits the body asks for.
            pub fn limit_changes(&self) -> $crate::limits::LimitChanges {
                $crate::limits::LimitChanges {
                    rpm_limit: self.rpm_limit,
                    tpm_limit: self.tpm_limit,
                    concurrency_limit: self.concurrency_limit,
                    budget_micro_usd: self.budget_micro_usd,
                    budget_period: self.budget_period,
                }
            }
        }
    };
    (flags $(#[$meta:meta])* $vis:vis struct $name:ident { $($own:tt)* } $(then { $($then:tt)* })?) => {
        $(#[$meta])*
        $vis struct $name {
            $($own)*
            /// Requests per minute.
            #[arg(long)]
            pub rpm: Option<i64>,
            /// Tokens per minute.
            #[arg(long)]
            pub tpm: Option<i64>,
            /// Concurrent requests.
            #[arg(long)]
            pub concurrency: Option<i64>,
            /// Budget in micro-USD (1 USD = 1000000) per --budget-period.
            #[arg(long)]
            pub budget_micro_usd: Option<i64>,
            #[arg(long, value_parser = ["day", "month", "total"])]
            pub budget_period: Option<String>,
            $($($then)*)?
        }

        impl $name {
            /// The quota limits the flags ask for.
            pub fn limits(&self) -> $crate::limits::QuotaLimits {
                $crate::limits::QuotaLimits {
                    rpm_limit: self.rpm,
                    tpm_limit: self.tpm,
                    concurrency_limit: self.concurrency,
                    budget_micro_usd: self.budget_micro_usd,
                    // The flag's parser admits only the periods' names.
                    budget_period: self
                        .budget_period
                        .as_deref()
                        .and_then($crate::store::entity::api_key::BudgetPeriod::from_name),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_that_is_no_object_is_named_as_the_api_names_it() {
        let err = serde_json::from_str::<LimitChanges>(r#""nope""#).unwrap_err();
        assert!(
            err.to_string().contains("expected struct LimitsPatch"),
            "{err}"
        );
    }

    #[test]
    fn a_patch_keeps_omitted_limits_and_clears_null_ones() {
        let before = QuotaLimits {
            rpm_limit: Some(5),
            tpm_limit: Some(100),
            ..Default::default()
        };
        let patch: LimitChanges = serde_json::from_str(r#"{"rpm_limit": null}"#).unwrap();
        assert_eq!(
            before.apply(&patch),
            QuotaLimits {
                tpm_limit: Some(100),
                ..Default::default()
            }
        );
    }
}
