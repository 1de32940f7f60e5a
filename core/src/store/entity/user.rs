//! `users`: people who sign in to the admin API.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use super::api_key::BudgetPeriod;

#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Does everything.
    #[sea_orm(string_value = "admin")]
    Admin,
    /// Manages only their own keys and sees only their own usage.
    #[sea_orm(string_value = "member")]
    Member,
    /// Reads everything except secrets; changes nothing.
    #[sea_orm(string_value = "viewer")]
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role {other:?}: expected admin, member or viewer"
            )),
        }
    }
}

crate::with_quota_limits! { columns
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
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
