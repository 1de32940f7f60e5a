//! Usage metering: one event per finished request, token totals equal to what the upstream
//! itself counted, stream usage asked for on the client's behalf and removed again, aborted
//! streams estimated, and no event lost or doubled while the database is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Mock, PgDatabase, chat_body, client, mock_route};
use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tollgate_core::store::entity::usage_event;

const SECRET: &str = "metering-test-secret-0123456789-abcdefghij";

async fn issue(gateway: &Gateway) -> String {
    let (status, key) = gateway
        .admin(
            "POST",
            "/api/keys",
            Some(json!({ "name": "metered", "rpm_limit": 100000 })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_string()
}

async fn post(
    gateway: &Gateway,
    key: &str,
    path: &str,
    body: Value,
    mock: &str,
) -> reqwest::Response {
    client()
        .post(gateway.url(path))
        .bearer_auth(key)
        .header("x-mock", mock)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits until the database holds `n` events, then returns them.
async fn events(db: &DatabaseConnection, n: u64) -> Vec<usage_event::Model> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = usage_event::Entity::find().count(db).await.unwrap_or(0);
        if count >= n {
            // A moment more: a straggler would show as a count above n.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return usage_event::Entity::find().all(db).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {n} usage events arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sqlite(dir: &std::path::Path) -> DatabaseConnection {
    Database::connect(format!(
        "sqlite://{}?mode=rw",
        dir.join("data/tollgate.db").display()
    ))
    .await
    .unwrap()
}

/// Reads a stream until `tokens` content deltas arrived, then drops the connection.
async fn read_tokens_then_leave(resp: reqwest::Response, tokens: u64) {
    let mut chunks = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut seen = 0;
    while seen < tokens {
        let chunk = tokio::time::timeout(Duration::from_secs(10), chunks.next())
            .await
            .expect("the stream stalled before its tokens")
            .expect("the stream ended before its tokens")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let Some(data) = event.strip_prefix(b"data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let content = &v["choices"][0]["delta"]["content"];
            if content.as_str().is_some_and(|c| !c.is_empty()) {
                seen += 1;
            }
        }
    }
    assert_eq!(seen, tokens);
}

#[tokio::test]
async fn event_totals_equal_the_upstream_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_in(dir.path(), &mock_route(&mock), "").await;
    let key = issue(&gateway).await;
    mock.reset().await;

    // 900 chat requests (streams with and without include_usage, answers, upstream 500s,
    // clients that leave mid-stream) and 100 embeddings, eight at a time.
    let aborts = |i: u64| i % 10 == 1 && !i.is_multiple_of(3) && !i.is_multiple_of(7);
    let chats = futures_util::stream::iter(0..900u64)
        .map(|i| {
            let (gateway, key) = (&gateway, &key);
            async move {
                let stream = i % 3 != 0;
                let mut body = chat_body("gpt-4o-mini", stream);
                body["messages"][0]["content"] =
                    json!(format!("Request number {i}, please answer."));
                if i % 5 == 0 {
                    body["stream_options"] = json!({ "include_usage": true });
                }
                if aborts(i) {
                    // The upstream stalls after a few tokens; the client leaves once it
                    // has them, so both sides know exactly what was generated.
                    let tokens = 1 + i % 4;
                    let resp = post(
                        gateway,
                        key,
                        "/v1/chat/completions",
                        body,
                        &format!("stall_after={tokens}"),
                    )
                    .await;
                    assert_eq!(resp.status(), 200);
                    read_tokens_then_leave(resp, tokens).await;
                    return;
                }
                let directive = if i % 7 == 0 { "status=500" } else { "" };
                let resp = post(gateway, key, "/v1/chat/completions", body, directive).await;
                let expected = if directive.is_empty() { 200 } else { 500 };
                assert_eq!(resp.status(), expected);
                let text = resp.text().await.unwrap();
                if stream && directive.is_empty() {
                    // The usage chunk reaches only clients that asked for it.
                    let has_usage_chunk = text.contains("\"choices\":[]");
                    assert_eq!(has_usage_chunk, i % 5 == 0, "request {i}: {text}");
                    assert!(text.trim_end().ends_with("data: [DONE]"));
                }
            }
        })
        .buffer_unordered(8)
        .count()
        .await;
    let embeddings = futures_util::stream::iter(0..100u64)
        .map(|i| {
            let (gateway, key) = (&gateway, &key);
            async move {
                let body = json!({ "model": "gpt-4o-mini", "input": format!("embed {i}") });
                assert_eq!(
                    post(gateway, key, "/v1/embeddings", body, "")
                        .await
                        .status(),
                    200
                );
            }
        })
        .buffer_unordered(8)
        .count()
        .await;
    let mut sent = (chats + embeddings) as u64;
    // Refused after authentication: metered too, with no tokens.
    let unknown = post(
        &gateway,
        &key,
        "/v1/chat/completions",
        chat_body("gpt-9", false),
        "",
    )
    .await;
    assert_eq!(unknown.status(), 404);
    sent += 1;

    let db = sqlite(dir.path()).await;
    let rows = events(&db, sent).await;
    assert_eq!(rows.len() as u64, sent);
    let stats = mock.stats().await;
    let prompt: i64 = rows.iter().map(|r| r.prompt_tokens).sum();
    let completion: i64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(prompt, stats["prompt_tokens"].as_i64().unwrap(), "{stats}");
    assert_eq!(
        completion,
        stats["completion_tokens"].as_i64().unwrap(),
        "{stats}"
    );
    // Aborted streams carry no usage: their prompt is counted with the tokenizer and their
    // completion from the content events seen, and both equal the upstream's own counts.
    let aborted = (0..900).filter(|i| aborts(*i)).count();
    assert!(aborted >= 40, "{aborted}");
    assert_eq!(rows.iter().filter(|r| r.estimated).count(), aborted);
    assert_eq!(
        stats["streams"]["aborted"].as_u64(),
        Some(aborted as u64),
        "{stats}"
    );
    let errors = (0..900).filter(|i| i % 7 == 0).count();
    assert_eq!(rows.iter().filter(|r| r.status == 500).count(), errors);
    assert!(
        rows.iter()
            .filter(|r| r.status == 500)
            .all(|r| r.prompt_tokens == 0)
    );
    assert!(rows.iter().all(|r| r.key_id.is_some()));
    // The gateway's own refusal says why; the upstream's errors and successes carry no code.
    let refused: Vec<_> = rows.iter().filter(|r| r.status == 404).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].error_code.as_deref(), Some("model_not_found"));
    assert!(
        refused[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("gpt-9")),
        "{:?}",
        refused[0].error_message
    );
    assert!(
        rows.iter()
            .filter(|r| r.status != 404)
            .all(|r| r.error_code.is_none())
    );
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| &r.event_id).collect();
    assert_eq!(ids.len(), rows.len());
}

#[tokio::test]
async fn an_aborted_stream_is_billed_for_what_was_generated() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_in(dir.path(), &mock_route(&mock), "").await;
    let key = issue(&gateway).await;
    // 200 tokens, 20 ms apart: the client leaves after a handful.
    let resp = post(
        &gateway,
        &key,
        "/v1/chat/completions",
        chat_body("gpt-4o-mini", true),
        "tokens=200,itl=20ms",
    )
    .await;
    let mut chunks = resp.bytes_stream();
    let mut seen = 0;
    while let Some(chunk) = chunks.next().await {
        seen += chunk.unwrap().len();
        if seen > 1500 {
            break;
        }
    }
    drop(chunks);
    let db = sqlite(dir.path()).await;
    let rows = events(&db, 1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(row.estimated, "{row:?}");
    assert!(row.prompt_tokens > 0, "{row:?}");
    assert!(
        row.completion_tokens > 0 && row.completion_tokens < 200,
        "{row:?}"
    );
}

#[tokio::test]
async fn no_event_is_lost_or_doubled_while_the_database_is_away() {
    let db = PgDatabase::create("meter").await;
    let envs = [
        ("TOLLGATE_DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_SECRET_KEY", SECRET),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_in_env(dir.path(), &mock_route(&mock), "", &envs).await;
    let key = issue(&gateway).await;
    // The key is cached from here on: requests need no database.
    assert_eq!(
        post(
            &gateway,
            &key,
            "/v1/chat/completions",
            chat_body("gpt-4o-mini", false),
            ""
        )
        .await
        .status(),
        200
    );

    let server = tollgate_testkit::postgres_server();
    let admin = Database::connect(format!("{server}/postgres"))
        .await
        .unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    let mut sent = 1;
    for i in 0..30 {
        let stream = i % 2 == 0;
        let resp = post(
            &gateway,
            &key,
            "/v1/chat/completions",
            chat_body("gpt-4o-mini", stream),
            "",
        )
        .await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        sent += 1;
    }
    // The writer gives up on the database and spills.
    let spill = dir.path().join("data/usage-spill.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&spill)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "nothing was spilled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let store = Database::connect(&db.url).await.unwrap();
    let rows = events(&store, sent).await;
    assert_eq!(rows.len() as u64, sent, "events lost or doubled");
    let stats = mock.stats().await;
    let completion: i64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(completion, stats["completion_tokens"].as_i64().unwrap());
    assert_eq!(
        std::fs::metadata(&spill).unwrap().len(),
        0,
        "the spill file was replayed"
    );
    store.close().await.unwrap();
    admin.close().await.unwrap();
}

#[tokio::test]
async fn a_graceful_shutdown_writes_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let mut gateway =
        Gateway::spawn_in(dir.path(), &mock_route(&mock), "  shutdown_grace: 1s\n").await;
    let key = issue(&gateway).await;
    for _ in 0..5 {
        let resp = post(
            &gateway,
            &key,
            "/v1/chat/completions",
            chat_body("gpt-4o-mini", false),
            "",
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    // Well within the writer's one-second batching interval.
    let status = gateway.proc.terminate();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    let db = sqlite(dir.path()).await;
    let count = usage_event::Entity::find().count(&db).await.unwrap();
    assert_eq!(count, 5);
    // Everything is in the database: the journal is left empty for the next start.
    let journal = std::fs::read_dir(dir.path().join("data/usage-journal")).unwrap();
    assert_eq!(journal.count(), 0);
}

/// A stream still running when the shutdown grace period ends is cut, and metered as far as
/// it got (its usage never came, so estimated from what passed) before the gateway exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_at_the_end_of_the_grace_period_is_metered() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let mut gateway =
        Gateway::spawn_in(dir.path(), &mock_route(&mock), "  shutdown_grace: 1s\n").await;
    let key = issue(&gateway).await;
    let mut stream = post(
        &gateway,
        &key,
        "/v1/chat/completions",
        chat_body("gpt-4o-mini", true),
        "tokens=200,itl=100ms",
    )
    .await;
    assert_eq!(stream.status(), 200);
    // Some tokens have passed when the gateway is told to stop.
    let mut seen = 0;
    while seen < 3 {
        let chunk = stream
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended early");
        seen += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.proc.terminate();
        drop(gateway);
        status
    })
    .await
    .unwrap();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    let db = sqlite(dir.path()).await;
    let events = usage_event::Entity::find().all(&db).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let cut = &events[0];
    assert_eq!(cut.status, 200);
    assert!(cut.estimated);
    assert!(
        (3..200).contains(&cut.completion_tokens),
        "{} completion tokens",
        cut.completion_tokens
    );
}

/// Completed requests survive a SIGKILL: each event is journaled (synced every 10 ms)
/// before it waits for its batch, and the next start replays what the journal holds. Only
/// requests completed within a moment of the kill may be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_requests_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let gateway = Gateway::spawn_in(dir.path(), &mock_route(&mock), "").await;
    let key = issue(&gateway).await;
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_millis(1500);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, key, completed) = (
                gateway.url("/v1/chat/completions"),
                key.clone(),
                completed.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < until {
                    let id = format!("kill-{w}-{i}");
                    i += 1;
                    let resp = client()
                        .post(&url)
                        .bearer_auth(&key)
                        .header("x-request-id", &id)
                        .json(&chat_body("gpt-4o-mini", false))
                        .send()
                        .await
                        .unwrap();
                    if resp.status() == 200 && resp.bytes().await.is_ok() {
                        completed.lock().unwrap().push((id, Instant::now()));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let killed_at = Instant::now();
    drop(gateway); // SIGKILL
    let completed = std::mem::take(&mut *completed.lock().unwrap());
    assert!(
        completed.len() > 20,
        "only {} requests completed",
        completed.len()
    );
    // The next start replays what the journal held.
    let _gateway = Gateway::spawn_in(dir.path(), &mock_route(&mock), "").await;
    let db = sqlite(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored: std::collections::HashSet<String> = usage_event::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        let missing: Vec<&String> = completed
            .iter()
            .filter(|(id, at)| {
                killed_at.duration_since(*at) > Duration::from_millis(100) && !stored.contains(id)
            })
            .map(|(id, _)| id)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} completed requests have no usage event: {missing:?}",
            missing.len(),
            completed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ten streams of 60 tokens, 10 ms apart, each left by its client after 5 tokens; the
/// events' completion tokens, how many are estimates, and the upstream's own count.
async fn abort_ledger(metering: &str) -> (i64, usize, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::spawn();
    let route = format!("{}{metering}", mock_route(&mock));
    let gateway = Gateway::spawn_in(dir.path(), &route, "").await;
    let key = issue(&gateway).await;
    mock.reset().await;
    for _ in 0..10 {
        let resp = post(
            &gateway,
            &key,
            "/v1/chat/completions",
            chat_body("gpt-4o-mini", true),
            "tokens=60,itl=10ms",
        )
        .await;
        assert_eq!(resp.status(), 200);
        read_tokens_then_leave(resp, 5).await;
    }
    let db = sqlite(dir.path()).await;
    let rows = events(&db, 10).await;
    assert_eq!(rows.len(), 10);
    let stats = mock.stats().await;
    (
        rows.iter().map(|r| r.completion_tokens).sum(),
        rows.iter().filter(|r| r.estimated).count(),
        stats["completion_tokens"].as_i64().unwrap(),
    )
}

/// `cancel` (the default): the upstream is closed when the client leaves, and the bill is
/// what the gateway had read by then, a lower bound of what the upstream generated.
#[tokio::test]
async fn a_client_abort_cancels_and_bills_a_lower_bound() {
    let (billed, estimated, generated) = abort_ledger("").await;
    assert_eq!(estimated, 10);
    assert!(
        billed >= 50 && billed <= generated,
        "{billed} of {generated}"
    );
    assert!(
        generated < 600,
        "the upstream went on to the end: {generated}"
    );
}

/// `drain`: the gateway goes on reading each stream to its end without the client, so the
/// bill is the upstream's own count, exactly.
#[tokio::test]
async fn a_client_abort_drains_and_bills_what_the_upstream_generated() {
    let (billed, estimated, generated) =
        abort_ledger("metering:\n  on_client_abort: drain\n  drain_timeout: 10s\n").await;
    assert_eq!(generated, 600);
    assert_eq!(billed, generated);
    assert_eq!(estimated, 0, "the streams' own usage was read");
}
