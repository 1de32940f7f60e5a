//! Every migration applies and rolls back on both SQLite and PostgreSQL (a fresh database
//! per test on the local server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sea_orm_migration::{
    MigratorTrait, SchemaManager,
    sea_orm::{ConnectionTrait, Database, DatabaseConnection},
};
use tollgate_migrations::Migrator;
use tollgate_testkit::{Backend, TestDatabase};

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

async fn up_down_up_on(backend: Backend) {
    let test_db = TestDatabase::create(backend, "migrate").await;
    let db = Database::connect(&test_db.url).await.unwrap();
    up_down_up(&db).await;
    db.close().await.unwrap();
}

#[tokio::test]
async fn migrations_run_up_and_down_on_sqlite() {
    up_down_up_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn migrations_run_up_and_down_on_postgres() {
    up_down_up_on(Backend::Postgres).await;
}
