//! `usage_events`: one row per finished request, idempotent by `event_id`. The metering
//! writes this row as it is (its serde form is the spill file's line, without `id`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "usage_events")]
pub struct Model {
    /// Assigned by the database; 0 in an event not yet stored.
    #[sea_orm(primary_key)]
    #[serde(skip)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: String,
    pub request_id: String,
    pub occurred_at: DateTimeUtc,
    pub key_id: Option<i64>,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub model: String,
    pub deployment: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micro_usd: i64,
    pub status: i32,
    pub latency_ms: i32,
    pub ttft_ms: Option<i32>,
    pub estimated: bool,
    /// The OpenAI error `code` the gateway answered with (a refusal or a failure); events
    /// spilled before this field existed read as `None`.
    #[serde(default)]
    pub error_code: Option<String>,
    /// That error's message, as the client got it.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The response cache's part: `hit` (answered from it: no upstream request), `miss`
    /// or `bypass`; `None` when the model is not cached.
    #[serde(default)]
    pub cache: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
