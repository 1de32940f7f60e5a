//! `tollgate users …`: manage admin-API users from the shell, against the same database
//! the gateway uses.

use std::io::BufRead;

use anyhow::Context;
use sea_orm_migration::sea_orm::DatabaseConnection;
use tollgate_core::{
    secrets::base62,
    store::{
        Actor,
        entity::user::Role,
        users::{self, NewUser},
    },
};

/// Creates a user. The password is read from standard input when asked, else generated and
/// printed once.
pub async fn create(
    db: &DatabaseConnection,
    email: &str,
    role: Role,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        (line.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        (base62(20)?, true)
    };
    let user = users::create_user(
        db,
        NewUser {
            email,
            password_hash: users::hash_new_password(&password)?,
            role,
        },
        &Actor::system("cli"),
    )
    .await?;
    println!(
        "created user {} ({}) with role {}",
        user.id,
        user.email,
        user.role.as_str()
    );
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

pub async fn list(db: &DatabaseConnection) -> anyhow::Result<()> {
    let (all, _) = users::list_users(db, &users::UserFilter::default(), 1, 1_000_000).await?;
    println!(
        "{:<6} {:<40} {:<8} {:<9} created",
        "id", "email", "role", "disabled"
    );
    for u in all {
        println!(
            "{:<6} {:<40} {:<8} {:<9} {}",
            u.id,
            u.email,
            u.role.as_str(),
            u.disabled,
            u.created_at.format("%Y-%m-%d %H:%M")
        );
    }
    Ok(())
}

/// On first start: with no active admin, creates one from `TOLLGATE_ADMIN_EMAIL` and
/// `TOLLGATE_ADMIN_PASSWORD`, or says how to.
pub async fn bootstrap_admin(db: &DatabaseConnection) -> anyhow::Result<()> {
    if users::count_active_admins(db).await? > 0 {
        return Ok(());
    }
    let email = std::env::var("TOLLGATE_ADMIN_EMAIL").unwrap_or_default();
    let password = std::env::var("TOLLGATE_ADMIN_PASSWORD").unwrap_or_default();
    if email.is_empty() || password.is_empty() {
        tracing::warn!(
            "no admin user yet: set TOLLGATE_ADMIN_EMAIL and TOLLGATE_ADMIN_PASSWORD, or run `tollgate users create --email … --role admin`"
        );
        return Ok(());
    }
    let user = users::create_user(
        db,
        NewUser {
            email: &email,
            password_hash: users::hash_new_password(&password)
                .context("TOLLGATE_ADMIN_PASSWORD")?,
            role: Role::Admin,
        },
        &Actor::system("bootstrap"),
    )
    .await
    .context("creating the first admin from TOLLGATE_ADMIN_EMAIL / TOLLGATE_ADMIN_PASSWORD")?;
    tracing::info!("created the first admin user {}", user.email);
    Ok(())
}
