//! Usage at scale on PostgreSQL: a million events in monthly partitions, the 30-day report
//! answered from the daily rollup plus the raw events of its partial days only, and
//! retention dropping whole months.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use common::{App, MASTER_KEY};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::Value;
use tollgate_core::store::{
    entity::usage_event,
    usage::{Pruned, insert_events, rebuild_rollup},
    usage_partitions::{self, drop_oldest_before},
};
use tollgate_testkit::Backend;

const EVENTS: i64 = 1_000_000;
/// The seeded events spread over this many days before today's midnight.
const DAYS: i64 = 70;

async fn scalar(app: &App, sql: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn totals(body: &Value) -> [i64; 4] {
    [
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cost_micro_usd",
    ]
    .map(|field| body["totals"][field].as_i64().unwrap())
}

#[tokio::test]
async fn a_million_events_report_from_the_rollup_and_age_out_by_month() {
    let app = App::spawn(Backend::Postgres).await;
    let today = midnight(Utc::now());
    // Imported history (straight SQL, as a bulk import would): one event every few seconds
    // over the past DAYS days, 40 keys, 4 models. The months it spans get partitions first.
    app.db
        .execute_unprepared(&format!(
            "SELECT tollgate_usage_partition(m::date) FROM generate_series(
                 date_trunc('month', now() AT TIME ZONE 'UTC' - interval '{DAYS} days'),
                 date_trunc('month', now() AT TIME ZONE 'UTC'), interval '1 month') AS m"
        ))
        .await
        .unwrap();
    let step = DAYS * 86_400_000_000 / EVENTS;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO usage_events (event_id, request_id, occurred_at, key_id, user_id, team_id, \
                 model, deployment, prompt_tokens, completion_tokens, cost_micro_usd, status, \
                 latency_ms, ttft_ms, estimated)
             SELECT 'seed-' || g, 'req-' || g,
                 '{start}'::timestamptz + g * interval '{step} microseconds',
                 g % 40 + 1, g % 10 + 1, NULL, 'model-' || (g % 4), 'mock',
                 100 + g % 50, 20 + g % 7, 150 + g % 13, 200, 40, NULL, false
             FROM generate_series(0, {last}) AS g",
            start = (today - Duration::days(DAYS)).to_rfc3339(),
            last = EVENTS - 1,
        ))
        .await
        .unwrap();
    rebuild_rollup(&app.db).await.unwrap();
    app.db
        .execute_unprepared("ANALYZE usage_events; ANALYZE usage_daily")
        .await
        .unwrap();
    // Today's traffic, written as the gateway writes it.
    let live: Vec<usage_event::Model> = (0..2_000)
        .map(|i| usage_event::Model {
            id: 0,
            event_id: format!("live-{i}"),
            request_id: format!("req-live-{i}"),
            occurred_at: today + (Utc::now() - today) * i / 2_000,
            key_id: Some(i64::from(i % 40 + 1)),
            user_id: Some(1),
            team_id: None,
            model: "model-0".into(),
            deployment: "mock".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_micro_usd: 7,
            status: 200,
            latency_ms: 30,
            ttft_ms: None,
            estimated: false,
            error_code: None,
            error_message: None,
            cache: None,
        })
        .collect();
    for chunk in live.chunks(500) {
        insert_events(&app.db, chunk).await.unwrap();
    }
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM usage_events").await,
        EVENTS + 2_000
    );
    // The events sit in their months' partitions; none fell to the default one.
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM usage_events_default").await,
        0
    );
    let months = usage_partitions::months(&app.db).await.unwrap();
    assert!(months.len() >= 3 + 2, "{months:?}");

    // The 30-day report, from 30 days ago this instant (a partial first day) to now.
    let from = Utc::now() - Duration::days(30);
    let to = Utc::now() + Duration::seconds(1);
    let path = format!(
        "/api/usage?from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let expected: [i64; 4] = {
        let sql = |column: &str| {
            format!(
                "SELECT CAST(COALESCE({column}, 0) AS BIGINT) FROM usage_events \
                 WHERE occurred_at >= '{}' AND occurred_at < '{}'",
                from.to_rfc3339(),
                to.to_rfc3339()
            )
        };
        [
            scalar(&app, &sql("COUNT(*)")).await,
            scalar(&app, &sql("SUM(prompt_tokens)")).await,
            scalar(&app, &sql("SUM(completion_tokens)")).await,
            scalar(&app, &sql("SUM(cost_micro_usd)")).await,
        ]
    };
    assert!(expected[0] > 400_000, "{expected:?}");
    let mut timings = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let report = app.call("GET", &path, Some(MASTER_KEY), None).await;
        timings.push(started.elapsed());
        assert_eq!(report.status, 200, "{}", report.text);
        assert_eq!(totals(&report.body), expected, "{}", report.text);
    }
    timings.sort();
    let ms = |d: StdDuration| d.as_secs_f64() * 1000.0;
    // Figures for the record (this is a debug build on a shared machine: not asserted).
    println!(
        "30-day report over {} events: median {:.1} ms, slowest {:.1} ms",
        EVENTS + 2_000,
        ms(timings[timings.len() / 2]),
        ms(timings[timings.len() - 1])
    );

    // The whole days come from the rollup: with the raw events of every whole day in the
    // range gone, the report is the same.
    let first_whole = midnight(from + Duration::days(1));
    app.db
        .execute_unprepared(&format!(
            "DELETE FROM usage_events WHERE occurred_at >= '{}' AND occurred_at < '{}'",
            first_whole.to_rfc3339(),
            today.to_rfc3339()
        ))
        .await
        .unwrap();
    let again = app.call("GET", &path, Some(MASTER_KEY), None).await;
    assert_eq!(totals(&again.body), expected, "{}", again.text);

    // Retention at 30 days: every month wholly before the cutoff goes as one partition
    // drop; the month holding the cutoff is left to the batch deletes.
    let cutoff = today - Duration::days(30);
    let whole_months: Vec<_> = months.iter().filter(|p| p.end <= cutoff).collect();
    assert!(!whole_months.is_empty(), "{months:?}");
    let oldest = &whole_months[0];
    let in_oldest = scalar(&app, &format!("SELECT COUNT(*) FROM {}", oldest.name)).await;
    // A month whose rollup is short of an event is kept.
    app.db
        .execute_unprepared(
            "UPDATE usage_daily SET requests = requests - 1 \
             WHERE id = (SELECT MIN(id) FROM usage_daily WHERE day = (SELECT MIN(day) FROM usage_daily))",
        )
        .await
        .unwrap();
    assert!(matches!(
        drop_oldest_before(&app.db, cutoff).await.unwrap(),
        Pruned::NotRolledUp { .. }
    ));
    app.db
        .execute_unprepared(
            "UPDATE usage_daily SET requests = requests + 1 \
             WHERE id = (SELECT MIN(id) FROM usage_daily WHERE day = (SELECT MIN(day) FROM usage_daily))",
        )
        .await
        .unwrap();
    let mut dropped = Vec::new();
    loop {
        match drop_oldest_before(&app.db, cutoff).await.unwrap() {
            Pruned::DroppedMonth { partition, events } => dropped.push((partition, events)),
            Pruned::Nothing => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(dropped.len(), whole_months.len(), "{dropped:?}");
    assert_eq!(dropped[0], (oldest.name.clone(), in_oldest as u64));
    assert!(
        usage_partitions::months(&app.db)
            .await
            .unwrap()
            .iter()
            .all(|p| p.end > cutoff)
    );
    // The report still reads whole days from the rollup.
    let after = app.call("GET", &path, Some(MASTER_KEY), None).await;
    assert_eq!(totals(&after.body), expected, "{}", after.text);
}
