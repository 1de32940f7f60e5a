//! Every migration applies and rolls back on both SQLite and PostgreSQL (a fresh database
//! per test on the local server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sea_orm_migration::{
    MigratorTrait, SchemaManager,
    sea_orm::{ConnectionTrait, Database, DatabaseConnection},
};
use tollgate_migrations::Migrator;

const TABLES: [&str; 9] = [
    "users",
    "teams",
    "team_members",
    "api_keys",
    "provider_credentials",
    "usage_events",
    "usage_daily",
    "audit_log",
    "seaql_migrations",
];

async fn tables_present(db: &DatabaseConnection) -> Vec<&'static str> {
    let manager = SchemaManager::new(db);
    let mut present = Vec::new();
    for table in TABLES {
        if manager.has_table(table).await.unwrap() {
            present.push(table);
        }
    }
    present
}

async fn up_down_up(db: &DatabaseConnection) {
    Migrator::up(db, None).await.unwrap();
    assert_eq!(tables_present(db).await, TABLES.to_vec());
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .unwrap()
            .is_empty()
    );

    // Constraints hold: emails are unique.
    let insert = "INSERT INTO users (email, password_hash, role, disabled, created_at, updated_at) \
                  VALUES ('a@example.com', 'x', 'admin', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)";
    db.execute_unprepared(insert).await.unwrap();
    let duplicate = db.execute_unprepared(insert).await.unwrap_err();
    assert!(
        matches!(
            duplicate.sql_err(),
            Some(sea_orm_migration::sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{duplicate}"
    );

    Migrator::down(db, None).await.unwrap();
    assert_eq!(tables_present(db).await, vec!["seaql_migrations"]);
    assert_eq!(
        Migrator::get_pending_migrations(db).await.unwrap().len(),
        Migrator::migrations().len()
    );

    Migrator::up(db, None).await.unwrap();
    assert_eq!(tables_present(db).await, TABLES.to_vec());
}

#[tokio::test]
async fn migrations_run_up_and_down_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("tollgate-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    let db = Database::connect(&url).await.unwrap();
    up_down_up(&db).await;
    db.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn migrations_run_up_and_down_on_postgres() {
    let server = std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("tollgate_migrate_{}", std::process::id());
    let admin = Database::connect(format!("{server}/postgres"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();

    let db = Database::connect(format!("{server}/{name}")).await.unwrap();
    up_down_up(&db).await;
    db.close().await.unwrap();

    admin
        .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
