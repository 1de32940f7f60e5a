//! `api_keys`: client keys. Only the HMAC of the secret is stored.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A budget period; budgets reset at 00:00 UTC (`day`), on the 1st at 00:00 UTC (`month`),
/// or never (`total`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
#[serde(rename_all = "lowercase")]
#[schema(as = PeriodName)]
pub enum BudgetPeriod {
    #[sea_orm(string_value = "day")]
    Day,
    #[sea_orm(string_value = "month")]
    Month,
    #[sea_orm(string_value = "total")]
    Total,
}

impl BudgetPeriod {
    /// The period named `day`, `month` or `total`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            "total" => Some(BudgetPeriod::Total),
            _ => None,
        }
    }
}

crate::with_quota_limits! { columns
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub public_id: String,
    pub display_prefix: String,
    #[sea_orm(unique)]
    pub secret_hash: String,
    pub previous_secret_hash: Option<String>,
    pub previous_expires_at: Option<DateTimeUtc>,
    pub name: String,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    /// JSON array of model names; `None` allows every model.
    pub allowed_models: Option<String>,
} then {
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Its requests use the response cache of models that have one (the default).
    pub cache_enabled: bool,
}
}

impl Model {
    /// The allowed models as a list; `None` allows every model.
    pub fn allowed_models(&self) -> Option<Vec<String>> {
        self.allowed_models
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
