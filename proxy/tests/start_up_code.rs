//! Letting go of the code only start-up ran: the mappings of the binary's code and
//! read-only data are dropped and map back in as they are used, the relocated data is left
//! alone, and the process runs on — in this test's own process, and in a real gateway that
//! serves after it has done so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, MASTER_KEY, Mock, chat_body, mock_route, send_chat};

/// One mapping of a process's executable: (permissions, resident KiB, anonymous KiB).
fn executable_mappings(pid: &str) -> Vec<(String, u64, u64)> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_str().unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut found = Vec::new();
    let mut ours = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let kib = || fields[1].parse::<u64>().unwrap();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = fields.len() >= 6 && fields[5..].join(" ") == exe;
            if ours {
                found.push((fields[1].to_owned(), 0, 0));
            }
        } else if ours && fields[0] == "Rss:" {
            found.last_mut().unwrap().1 = kib();
        } else if ours && fields[0] == "Anonymous:" {
            found.last_mut().unwrap().2 = kib();
        }
    }
    found
}

fn code_rss_kib(mappings: &[(String, u64, u64)]) -> u64 {
    mappings
        .iter()
        .filter(|(perms, ..)| perms == "r-xp")
        .map(|(_, rss, _)| rss)
        .sum()
}

/// The relocated read-only data: read-only, yet written (private copies) at load time.
fn relocated(mappings: &[(String, u64, u64)]) -> Vec<u64> {
    mappings
        .iter()
        .filter(|(perms, _, anonymous)| perms == "r--p" && *anonymous > 0)
        .map(|(_, _, anonymous)| *anonymous)
        .collect()
}

#[test]
fn this_process_lets_go_of_its_code_and_runs_on() {
    let before = executable_mappings("self");
    assert!(code_rss_kib(&before) > 0, "{before:?}");

    let released = tollgate_proxy::start_up_code::release().unwrap();
    let after = executable_mappings("self");

    assert!(released.mappings >= 1 && released.resident_kib > 0);
    assert!(
        code_rss_kib(&after) < code_rss_kib(&before),
        "the code's resident size fell: {before:?} → {after:?}"
    );
    assert_eq!(
        relocated(&after),
        relocated(&before),
        "the relocated data keeps its pages"
    );
    // Code, constants and relocated pointers all read back as they were.
    let text: Vec<String> = (0..2_000).map(|i| format!("{i:>6}|{:?}", i * 7)).collect();
    let json = serde_json::to_string(&text).unwrap();
    assert_eq!(serde_json::from_str::<Vec<String>>(&json).unwrap(), text);
}

#[tokio::test]
async fn a_gateway_serves_after_letting_go_of_its_start_up_code() {
    let mock = Mock::spawn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let envs = [("RUST_LOG", "info")];
    let gw = Gateway::spawn_logged(dir.path(), &mock_route(&mock), "", &envs, &log).await;
    let pid = gw.proc.pid().to_string();
    let before = relocated(&executable_mappings(&pid));

    // Two seconds after start-up, at the first quiet second.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("let go of the code only start-up ran")
    {
        assert!(Instant::now() < deadline, "not released within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, body) = send_chat(gw.post("/v1/chat/completions").bearer_auth(MASTER_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let streamed = gw
        .post("/v1/chat/completions")
        .bearer_auth(MASTER_KEY)
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(streamed.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let (status, key) = gw
        .admin(
            "POST",
            "/api/keys",
            Some(serde_json::json!({ "name": "after" })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let (status, body) = gw
        .chat_as(key["secret"].as_str().unwrap(), "gpt-4o-mini")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(gw.metrics_text().await.contains("tollgate_requests_total"));
    assert_eq!(relocated(&executable_mappings(&pid)), before);
}
