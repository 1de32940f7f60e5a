//! The operator's CLI (`tollgate migrate`, `tollgate users …`) and the first-start admin,
//! on the embedded SQLite database and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::PgDatabase;

fn tollgate(dir: &Path, database_url: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    tollgate_with(dir, database_url, &[], args, stdin)
}

fn tollgate_with(
    dir: &Path,
    database_url: Option<&str>,
    envs: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let config = dir.join("tollgate.yaml");
    if !config.exists() {
        let text = format!(
            "server:\n  data_dir: {}\nproviders:\n  - {{name: mock, kind: mock}}\nmodels:\n  - {{name: m, deployments: [{{provider: mock}}]}}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, text).unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env_remove("TOLLGATE_SECRET_KEY")
        .envs(envs.iter().copied());
    if let Some(url) = database_url {
        cmd.env("TOLLGATE_DATABASE_URL", url);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn users_lifecycle(dir: &Path, url: Option<&str>) {
    let out = tollgate(dir, url, &["migrate"], None);
    assert!(out.status.success(), "{}", text(&out));
    use tollgate_migrations::{Migrator, MigratorTrait};
    let all = format!("{} migrations applied", Migrator::migrations().len());
    assert!(text(&out).contains(&all), "{}", text(&out));
    let out = tollgate(dir, url, &["migrate"], None);
    assert!(
        text(&out).contains("0 migrations applied"),
        "{}",
        text(&out)
    );

    let out = tollgate(
        dir,
        url,
        &[
            "users",
            "create",
            "--email",
            "Ada@Example.com",
            "--role",
            "admin",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("created user 1 (ada@example.com) with role admin"),
        "{printed}"
    );
    assert!(printed.contains("password (shown once): "), "{printed}");

    let out = tollgate(
        dir,
        url,
        &[
            "users",
            "create",
            "--email",
            "bob@example.com",
            "--password-stdin",
        ],
        Some("a-long-enough-password\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("a-long-enough-password"),
        "the password must not be echoed"
    );

    let out = tollgate(
        dir,
        url,
        &[
            "users",
            "create",
            "--email",
            "bob@example.com",
            "--role",
            "viewer",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("email: a user with email bob@example.com already exists"),
        "{}",
        text(&out)
    );
    let out = tollgate(
        dir,
        url,
        &[
            "users",
            "create",
            "--email",
            "c@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("password: must be at least 12 characters"),
        "{}",
        text(&out)
    );
    let out = tollgate(
        dir,
        url,
        &["users", "create", "--email", "not-an-email"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));

    let out = tollgate(dir, url, &["users", "list"], None);
    let listed = text(&out);
    assert!(
        listed.contains("ada@example.com") && listed.contains("bob@example.com"),
        "{listed}"
    );
    assert!(!listed.contains("c@example.com"));
    assert!(listed.contains(" member "), "default role: {listed}");
}

const SECRET: (&str, &str) = (
    "TOLLGATE_SECRET_KEY",
    "cli-test-secret-0123456789-abcdefghijkl",
);

/// `tollgate keys create|list|revoke`; the secret is printed once and never listed.
fn keys_lifecycle(dir: &Path, url: Option<&str>) {
    let envs = [SECRET];
    let out = tollgate_with(
        dir,
        url,
        &envs,
        &["users", "create", "--email", "kim@example.com"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let create = [
        "keys",
        "create",
        "--name",
        "ci runner",
        "--user",
        "kim@example.com",
        "--rpm",
        "60",
        "--models",
        "gpt-4o,gpt-4o-mini",
        "--budget-micro-usd",
        "5000000",
        "--budget-period",
        "month",
        "--expires-in",
        "30d",
    ];
    let out = tollgate_with(dir, url, &envs, &create, None);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    let secret = printed
        .split_whitespace()
        .find(|w| w.starts_with("tg_"))
        .unwrap()
        .to_string();
    let id = printed
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_string();
    assert_eq!(secret.len(), 43);

    let out = tollgate_with(dir, url, &envs, &["keys", "list"], None);
    let listed = text(&out);
    assert!(
        listed.contains(&id) && listed.contains("ci runner") && listed.contains("active"),
        "{listed}"
    );
    assert!(
        listed.contains(&secret[..11]) && !listed.contains(&secret),
        "{listed}"
    );

    let bad = tollgate_with(
        dir,
        url,
        &envs,
        &["keys", "create", "--name", "x", "--rpm", "0"],
        None,
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("rpm_limit"), "{}", text(&bad));

    let out = tollgate_with(dir, url, &envs, &["keys", "revoke", &id], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = tollgate_with(dir, url, &envs, &["keys", "list"], None);
    assert!(!text(&out).contains(&id));
    let out = tollgate_with(
        dir,
        url,
        &envs,
        &["keys", "list", "--all", "--user", "kim@example.com"],
        None,
    );
    assert!(
        text(&out).contains(&id) && text(&out).contains("revoked"),
        "{}",
        text(&out)
    );
    let out = tollgate_with(dir, url, &envs, &["keys", "revoke", "key_missing"], None);
    assert!(
        !out.status.success() && text(&out).contains("not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn keys_on_the_embedded_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    keys_lifecycle(dir.path(), None);
}

#[tokio::test]
async fn keys_on_postgres_need_the_server_secret() {
    let db = PgDatabase::create("keys").await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        // A shared database means replicas: a generated local secret would not do.
        let out = tollgate(
            dir.path(),
            Some(&url),
            &["keys", "create", "--name", "x"],
            None,
        );
        assert!(!out.status.success());
        assert!(text(&out).contains("TOLLGATE_SECRET_KEY"), "{}", text(&out));
        keys_lifecycle(dir.path(), Some(&url));
    })
    .await
    .unwrap();
}

#[test]
fn users_on_the_embedded_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    users_lifecycle(dir.path(), None);
    assert!(dir.path().join("data/tollgate.db").exists());
}

#[tokio::test]
async fn users_on_postgres() {
    let db = PgDatabase::create("cli").await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || users_lifecycle(dir.path(), Some(&url)))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_first_admin_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "server:\n  proxy_listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n  threads: 1\n  data_dir: {}\nproviders:\n  - {{name: mock, kind: mock}}\nmodels:\n  - {{name: m, deployments: [{{provider: mock}}]}}\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("tollgate.yaml"), config).unwrap();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(dir.path().join("tollgate.yaml"))
        .env("TOLLGATE_MASTER_KEY", common::MASTER_KEY)
        .env("TOLLGATE_ADMIN_EMAIL", "root@example.com")
        .env("TOLLGATE_ADMIN_PASSWORD", "bootstrap-password-123")
        .env_remove("TOLLGATE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The start-up line is printed once the database is ready.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(gateway.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(line.contains("\"proxy\""), "{line}");
    let out = tollgate(dir.path(), None, &["users", "list"], None);
    assert!(
        text(&out).contains("root@example.com") && text(&out).contains("admin"),
        "{}",
        text(&out)
    );
}
