//! On PostgreSQL, `usage_events` becomes a table partitioned by month of `occurred_at`, so
//! usage retention drops a month's partition instead of deleting its rows one by one, and
//! the reports' recent-days queries read only the partitions they need.
//!
//! The partitions are made by a database function the gateway calls ahead of time,
//! `tollgate_usage_partitions_ahead(n)` (this month and the next `n`), one month each,
//! named `usage_events_yYYYYmMM`; an event whose month has none yet lands in
//! `usage_events_default` and is moved into its month when that partition is made. The
//! unique `event_id` becomes unique per (`event_id`, `occurred_at`): a partitioned table's
//! keys must hold its partition column, and an event replayed from the spill file keeps
//! its time, so it still conflicts with itself. SQLite keeps one plain table.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns as migrations 5 and 10 made them, with the keys a partitioned table allows.
const COLUMNS: &str = "
    id bigserial NOT NULL,
    event_id varchar(64) NOT NULL,
    request_id varchar(128) NOT NULL,
    occurred_at timestamptz NOT NULL,
    key_id bigint NULL,
    user_id bigint NULL,
    team_id bigint NULL,
    model varchar(256) NOT NULL,
    deployment varchar(64) NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cost_micro_usd bigint NOT NULL,
    status integer NOT NULL,
    latency_ms integer NOT NULL,
    ttft_ms integer NULL,
    estimated boolean NOT NULL DEFAULT false,
    error_code varchar(64) NULL,
    error_message text NULL";

const COPY: &str = "id, event_id, request_id, occurred_at, key_id, user_id, team_id, model, \
    deployment, prompt_tokens, completion_tokens, cost_micro_usd, status, latency_ms, ttft_ms, \
    estimated, error_code, error_message";

const INDEXES: &str = "
    CREATE INDEX idx_usage_events_occurred_at ON usage_events (occurred_at);
    CREATE INDEX idx_usage_events_key_time ON usage_events (key_id, occurred_at);
    CREATE INDEX idx_usage_events_user_time ON usage_events (user_id, occurred_at);
    CREATE INDEX idx_usage_events_team_time ON usage_events (team_id, occurred_at);";

const DROP_INDEXES: &str = "
    DROP INDEX idx_usage_events_occurred_at;
    DROP INDEX idx_usage_events_key_time;
    DROP INDEX idx_usage_events_user_time;
    DROP INDEX idx_usage_events_team_time;";

/// One month's partition, made once (concurrent callers wait on an advisory lock), with
/// the events the default partition holds for that month moved into it: PostgreSQL
/// refuses a partition whose rows sit in the default one.
const PARTITION_FUNCTIONS: &str = r#"
CREATE FUNCTION tollgate_usage_partition(month date) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    first_at timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    next_at timestamptz := (date_trunc('month', month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'usage_events_' || to_char(month, '"y"YYYY"m"MM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tollgate_usage_partitions'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    CREATE TEMP TABLE tollgate_usage_moved (LIKE usage_events) ON COMMIT DROP;
    WITH moved AS (
        DELETE FROM usage_events_default
        WHERE occurred_at >= first_at AND occurred_at < next_at
        RETURNING *
    )
    INSERT INTO tollgate_usage_moved SELECT * FROM moved;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
        name, first_at, next_at
    );
    INSERT INTO usage_events SELECT * FROM tollgate_usage_moved;
    DROP TABLE tollgate_usage_moved;
    RETURN true;
END
$fn$;

CREATE FUNCTION tollgate_usage_partitions_ahead(months integer) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    made integer := 0;
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..months LOOP
        IF tollgate_usage_partition((this_month + make_interval(months => i))::date) THEN
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$fn$;
"#;

/// Copies the events of `old` into the new `usage_events` (ids kept, the id sequence going
/// on after them) and drops `old`.
fn move_rows_from(old: &str) -> String {
    format!(
        "INSERT INTO usage_events ({COPY}) SELECT {COPY} FROM {old};
         SELECT setval(pg_get_serial_sequence('usage_events', 'id'),
                       COALESCE((SELECT MAX(id) FROM usage_events), 0) + 1, false);
         DROP TABLE {old};"
    )
}

/// The months a gateway keeps partitions ready for, beyond this one.
const AHEAD: u32 = 2;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        db.execute_unprepared(&format!(
            "ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;
             {DROP_INDEXES}
             CREATE TABLE usage_events ({COLUMNS},
                 CONSTRAINT usage_events_partitioned_pkey PRIMARY KEY (id, occurred_at),
                 CONSTRAINT usage_events_event_id_occurred_at_key UNIQUE (event_id, occurred_at)
             ) PARTITION BY RANGE (occurred_at);
             CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
             {INDEXES}
             {PARTITION_FUNCTIONS}"
        ))
        .await?;
        // A partition for every month that has events, then the rows: each goes straight
        // to its month.
        db.execute_unprepared(&format!(
            "SELECT tollgate_usage_partition(month::date) FROM generate_series(
                 (SELECT date_trunc('month', MIN(occurred_at) AT TIME ZONE 'UTC') FROM usage_events_unpartitioned),
                 date_trunc('month', now() AT TIME ZONE 'UTC'),
                 interval '1 month') AS month;
             SELECT tollgate_usage_partitions_ahead({AHEAD});
             {}",
            move_rows_from("usage_events_unpartitioned")
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        m.get_connection()
            .execute_unprepared(&format!(
                "DROP FUNCTION tollgate_usage_partitions_ahead(integer);
                 DROP FUNCTION tollgate_usage_partition(date);
                 ALTER TABLE usage_events RENAME TO usage_events_partitioned;
                 {DROP_INDEXES}
                 CREATE TABLE usage_events ({COLUMNS},
                     CONSTRAINT usage_events_pkey PRIMARY KEY (id),
                     CONSTRAINT usage_events_event_id_key UNIQUE (event_id));
                 {INDEXES}
                 {}",
                move_rows_from("usage_events_partitioned")
            ))
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
