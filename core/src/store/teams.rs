//! Teams and their members. Every change writes its audit row in the same transaction.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

use crate::{limits::LimitChanges, store::key_policy::PolicyChanges};

use super::{
    StoreError,
    audit::{Actor, AuditedChange},
    entity::{api_key, team, team_member, user},
    users,
};

/// A team's name, trimmed and checked.
pub fn check_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(StoreError::invalid("name", "must be 1 to 128 characters"));
    }
    Ok(name.to_string())
}

fn duplicate(name: &str) -> impl Fn(sea_orm::DbErr) -> StoreError + '_ {
    move |e| StoreError::from_insert(e, "name", format!("a team named {name} already exists"))
}

pub async fn get_team<C: ConnectionTrait>(db: &C, id: i64) -> Result<team::Model, StoreError> {
    team::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team {id}")))
}

/// One page of teams (1-based) and the total number.
pub async fn list_teams<C: ConnectionTrait>(
    db: &C,
    page: u64,
    per_page: u64,
) -> Result<(Vec<team::Model>, u64), StoreError> {
    let paginator = team::Entity::find()
        .order_by_asc(team::Column::Id)
        .paginate(db, per_page);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page.saturating_sub(1)).await?;
    Ok((items, total))
}

/// A team's members, by user id.
pub async fn members<C: ConnectionTrait>(db: &C, id: i64) -> Result<Vec<user::Model>, StoreError> {
    let member_ids: Vec<i64> = team_member::Entity::find()
        .filter(team_member::Column::TeamId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(member_ids))
        .order_by_asc(user::Column::Id)
        .all(db)
        .await?)
}

/// Creates a team; `name` must already be checked ([`check_name`]).
pub async fn create_team<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    name: String,
    actor: &Actor,
) -> Result<team::Model, StoreError> {
    let now = Utc::now();
    let txn = AuditedChange::begin(db, actor).await?;
    let created = team::ActiveModel {
        name: Set(name.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn.conn())
    .await
    .map_err(duplicate(&name))?;
    txn.commit(
        "team.create",
        "team",
        created.id,
        json!({ "after": { "name": created.name } }),
    )
    .await?;
    Ok(created)
}

/// Changes to a team: a new (checked) name, and its limits.
#[derive(Debug, Default)]
pub struct TeamChanges {
    pub name: Option<String>,
    /// Quota limits shared by all the team's keys.
    pub limits: LimitChanges,
    /// What its members' own keys may have at most.
    pub key_policy: PolicyChanges,
}

pub async fn update_team<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    changes: TeamChanges,
    actor: &Actor,
) -> Result<team::Model, StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_team(txn.conn(), id).await?;
    let limits = before.limits().apply(&changes.limits);
    limits.check()?;
    let policy = before.key_policy().apply(&changes.key_policy)?;
    let mut active = before.clone().into_active_model();
    if let Some(name) = &changes.name {
        active.name = Set(name.clone());
    }
    active.set_limits(limits);
    let (allowed_models, key_limits) = policy.to_columns();
    active.allowed_models = Set(allowed_models);
    active.key_limits = Set(key_limits);
    active.updated_at = Set(Utc::now());
    let after = active
        .update(txn.conn())
        .await
        .map_err(duplicate(changes.name.as_deref().unwrap_or_default()))?;
    txn.commit(
        "team.update",
        "team",
        id,
        json!({
            "before": { "name": before.name, "limits": before.limits().summary(), "key_policy": before.key_policy().summary() },
            "after": { "name": after.name, "limits": after.limits().summary(), "key_policy": after.key_policy().summary() },
        }),
    )
    .await?;
    Ok(after)
}

/// Deletes a team; its keys and memberships go with it.
pub async fn delete_team<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_team(txn.conn(), id).await?;
    team_member::Entity::delete_many()
        .filter(team_member::Column::TeamId.eq(id))
        .exec(txn.conn())
        .await?;
    api_key::Entity::delete_many()
        .filter(api_key::Column::TeamId.eq(id))
        .exec(txn.conn())
        .await?;
    team::Entity::delete_by_id(id).exec(txn.conn()).await?;
    txn.commit(
        "team.delete",
        "team",
        id,
        json!({ "before": { "name": before.name } }),
    )
    .await?;
    Ok(())
}

/// Adds a user to a team; adding a member twice changes nothing.
pub async fn add_member<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    user_id: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    get_team(txn.conn(), id).await?;
    users::get_user(txn.conn(), user_id).await?;
    let exists = team_member::Entity::find_by_id((id, user_id))
        .one(txn.conn())
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    team_member::ActiveModel {
        team_id: Set(id),
        user_id: Set(user_id),
        created_at: Set(Utc::now()),
    }
    .insert(txn.conn())
    .await?;
    txn.commit(
        "team.member.add",
        "team",
        id,
        json!({ "after": { "user_id": user_id } }),
    )
    .await?;
    Ok(())
}

pub async fn remove_member<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    user_id: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    get_team(txn.conn(), id).await?;
    let removed = team_member::Entity::delete_by_id((id, user_id))
        .exec(txn.conn())
        .await?;
    if removed.rows_affected == 0 {
        return Err(StoreError::NotFound(format!("user {user_id} in team {id}")));
    }
    txn.commit(
        "team.member.remove",
        "team",
        id,
        json!({ "before": { "user_id": user_id } }),
    )
    .await?;
    Ok(())
}
