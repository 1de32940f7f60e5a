//! Every migration applies and rolls back on both SQLite and PostgreSQL (a fresh database
//! per test on the local server); on PostgreSQL usage events move into monthly partitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sea_orm_migration::{
    MigratorTrait, SchemaManager,
    sea_orm::{ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement},
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

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

fn event(id: &str, at: &str) -> String {
    format!(
        "INSERT INTO usage_events (event_id, request_id, occurred_at, model, deployment, \
             prompt_tokens, completion_tokens, cost_micro_usd, status, latency_ms, estimated) \
         VALUES ('{id}', 'r', '{at}', 'm', 'd', 1, 1, 1, 200, 1, false)"
    )
}

#[tokio::test]
async fn postgres_usage_events_move_into_monthly_partitions() {
    let test_db = TestDatabase::create(Backend::Postgres, "partitions").await;
    let db = Database::connect(&test_db.url).await.unwrap();
    // Events stored before partitioning: two old months and now.
    Migrator::up(&db, Some(11)).await.unwrap();
    for (id, at) in [
        ("a", "2025-10-15T12:00:00Z"),
        ("b", "2025-11-30T23:59:59.999999Z"),
        ("c", "2025-12-01T00:00:00Z"),
    ] {
        db.execute_unprepared(&event(id, at)).await.unwrap();
    }
    db.execute_unprepared("INSERT INTO usage_events (event_id, request_id, occurred_at, model, deployment, prompt_tokens, completion_tokens, cost_micro_usd, status, latency_ms, estimated) VALUES ('d', 'r', now(), 'm', 'd', 1, 1, 1, 200, 1, false)")
        .await
        .unwrap();
    // The partitioning migration alone: "back down" below takes exactly it back.
    Migrator::up(&db, Some(1)).await.unwrap();

    let partition_of = |id: &str| {
        format!("SELECT COUNT(*) FROM usage_events WHERE event_id = '{id}' AND tableoid = ")
    };
    for (id, partition) in [
        ("a", "usage_events_y2025m10"),
        ("b", "usage_events_y2025m11"),
        ("c", "usage_events_y2025m12"),
    ] {
        let sql = format!("{}'{partition}'::regclass", partition_of(id));
        assert_eq!(count(&db, &sql).await, 1, "{id} in {partition}");
    }
    // This month and the next two are ready; nothing is in the default partition.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM generate_series(0, 2) AS i WHERE to_regclass('usage_events_' || \
             to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i), '\"y\"YYYY\"m\"MM')) IS NOT NULL"
        )
        .await,
        3
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM usage_events_default").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT tollgate_usage_partitions_ahead(2)::bigint").await,
        0
    );
    // Ids go on from the old table's.
    db.execute_unprepared(&event("e", "2025-12-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT id FROM usage_events WHERE event_id = 'e'").await,
        5
    );
    // The same event (id and time) is stored once.
    let again = db
        .execute_unprepared(&event("e", "2025-12-02T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("duplicate key"), "{again}");
    // An event in a month with no partition lands in the default one, and moves into its
    // month's partition when that is made.
    db.execute_unprepared(&event("f", "2031-03-04T05:06:07Z"))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM usage_events_default").await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT tollgate_usage_partition('2031-03-01')::int::bigint"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM usage_events_default").await,
        0
    );
    assert_eq!(
        count(
            &db,
            &format!("{}'usage_events_y2031m03'::regclass", partition_of("f"))
        )
        .await,
        1
    );

    // Back down, the events are in one plain table again.
    Migrator::down(&db, Some(1)).await.unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM usage_events").await, 6);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM pg_partitioned_table WHERE partrelid = 'usage_events'::regclass"
        )
        .await,
        0
    );
    db.close().await.unwrap();
}
