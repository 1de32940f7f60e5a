//! `tollgate keys …`: issue, list and revoke API keys from the shell, against the same
//! store as the admin API (and with the same audit rows).

use anyhow::Context;
use sea_orm_migration::sea_orm::DatabaseConnection;
use tollgate_core::{
    secrets::ServerSecret,
    store::{
        Actor,
        entity::user,
        keys::{self, KeyChange, KeyFilter, KeyLimits, NewKey},
        users,
    },
};

/// The flags of `tollgate keys create`.
pub struct CreateArgs {
    pub name: String,
    pub user: Option<String>,
    pub team_id: Option<i64>,
    pub models: Option<Vec<String>>,
    pub limits: LimitArgs,
    pub expires_in: Option<std::time::Duration>,
}

tollgate_core::with_quota_limits! { flags
/// The limit flags of `tollgate keys create`.
#[derive(clap::Args)]
pub struct LimitArgs {}
}

async fn user_by_email(db: &DatabaseConnection, email: &str) -> anyhow::Result<user::Model> {
    users::find_by_email(db, email)
        .await?
        .with_context(|| format!("no user with email {email}"))
}

pub async fn create(
    db: &DatabaseConnection,
    secret: &ServerSecret,
    args: CreateArgs,
) -> anyhow::Result<()> {
    let user_id = match &args.user {
        Some(email) => Some(user_by_email(db, email).await?.id),
        None => None,
    };
    let expires_at = args
        .expires_in
        .map(chrono::Duration::from_std)
        .transpose()
        .context("--expires-in is too long")?
        .map(|d| chrono::Utc::now() + d);
    let issued = keys::create_key(
        db,
        secret,
        NewKey {
            name: args.name,
            user_id,
            team_id: args.team_id,
            limits: KeyLimits {
                allowed_models: args.models,
                quota: args.limits.limits(),
                expires_at,
            },
            cache_enabled: true,
        },
        &Actor::system("cli"),
    )
    .await?;
    println!("created key {} ({})", issued.key.public_id, issued.key.name);
    println!("secret (shown once): {}", issued.secret);
    Ok(())
}

pub async fn list(
    db: &DatabaseConnection,
    user: Option<String>,
    include_revoked: bool,
) -> anyhow::Result<()> {
    let user_id = match &user {
        Some(email) => Some(user_by_email(db, email).await?.id),
        None => None,
    };
    let filter = KeyFilter {
        user_id,
        team_id: None,
        include_revoked,
        ..KeyFilter::default()
    };
    let (all, _) = keys::list_keys(db, &filter, 1, 1_000_000).await?;
    println!(
        "{:<22} {:<12} {:<24} {:<8} {:<8} status",
        "id", "prefix", "name", "user", "team"
    );
    let now = chrono::Utc::now();
    for k in all {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        println!(
            "{:<22} {:<12} {:<24} {:<8} {:<8} {status}",
            k.public_id,
            k.display_prefix,
            k.name,
            opt(k.user_id),
            opt(k.team_id)
        );
    }
    Ok(())
}

pub async fn revoke(db: &DatabaseConnection, public_id: &str) -> anyhow::Result<()> {
    let key = keys::revoke_key(db, public_id, &Actor::system("cli")).await?;
    println!("revoked key {} ({})", key.public_id, key.name);
    // Running gateways cache keys: tell them, or they notice only when the entry expires.
    match std::env::var(crate::backend::redis::REDIS_URL_ENV) {
        Ok(url) if !url.is_empty() => {
            crate::auth::invalidation::publish_once(&url, &KeyChange::Key(key.public_id)).await?;
        }
        _ => eprintln!(
            "note: without TOLLGATE_REDIS_URL, running gateways refuse the key once their cache entry expires (within 60 s)"
        ),
    }
    Ok(())
}
