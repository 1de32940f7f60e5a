//! `teams`: groups of users; keys and budgets can belong to a team.

use sea_orm::entity::prelude::*;

use super::api_key::BudgetPeriod;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "teams")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
    pub budget_micro_usd: Option<i64>,
    pub budget_period: Option<BudgetPeriod>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
