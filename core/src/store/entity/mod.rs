//! sea-orm entities, one per table.

pub mod api_key;
pub mod audit_log;
pub mod provider_credential;
pub mod team;
pub mod team_member;
pub mod usage_event;
pub mod user;

use sea_orm::Set;

use crate::limits::QuotaLimits;

/// Maps an entity's five limit columns to [`QuotaLimits`] and back, in one place for the
/// keys, users and teams tables.
macro_rules! quota_limit_columns {
    ($($entity:ident),*) => {$(
        impl $entity::Model {
            /// The quota limits set on this key, user or team.
            pub fn limits(&self) -> QuotaLimits {
                QuotaLimits {
                    rpm_limit: self.rpm_limit,
                    tpm_limit: self.tpm_limit,
                    concurrency_limit: self.concurrency_limit,
                    budget_micro_usd: self.budget_micro_usd,
                    budget_period: self.budget_period,
                }
            }
        }

        impl $entity::ActiveModel {
            pub fn set_limits(&mut self, limits: QuotaLimits) {
                self.rpm_limit = Set(limits.rpm_limit);
                self.tpm_limit = Set(limits.tpm_limit);
                self.concurrency_limit = Set(limits.concurrency_limit);
                self.budget_micro_usd = Set(limits.budget_micro_usd);
                self.budget_period = Set(limits.budget_period);
            }
        }
    )*};
}

quota_limit_columns!(api_key, team, user);
