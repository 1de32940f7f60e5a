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
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
