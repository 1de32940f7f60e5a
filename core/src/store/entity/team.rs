//! `teams`: groups of users; keys and budgets can belong to a team.

use sea_orm::entity::prelude::*;

use super::api_key::BudgetPeriod;

crate::with_quota_limits! { columns
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "teams")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
} then {
    /// JSON array: the models its members' own keys may allow; `None`: any.
    pub allowed_models: Option<String>,
    /// JSON limits: the most each of its members' own keys may have.
    pub key_limits: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// What the owner's members' own keys may have at most.
    pub fn key_policy(&self) -> crate::store::key_policy::KeyPolicy {
        crate::store::key_policy::KeyPolicy::from_columns(
            self.allowed_models.as_deref(),
            self.key_limits.as_deref(),
        )
    }
}
