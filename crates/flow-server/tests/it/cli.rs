//! The `flow` binary as a user runs it: serve, demo tenants, tenant and key commands,
//! graceful shutdown on SIGTERM.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const FLOW: &str = env!("CARGO_BIN_EXE_flow");

/// A fresh data directory; on the PostgreSQL run also a fresh database, named in the
/// directory's `flow.toml` that every command here passes with `--config`.
async fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(url) = crate::helpers::test_database_url().await {
        std::fs::write(
            dir.path().join("flow.toml"),
            format!("database_url = {url:?}\n"),
        )
        .unwrap();
    }
    dir
}

/// `flow --data-dir DIR [--config DIR/flow.toml]`.
fn flow_command(dir: &Path) -> Command {
    let mut command = Command::new(FLOW);
    command.arg("--data-dir").arg(dir);
    let config = dir.join("flow.toml");
    if config.exists() {
        command.arg("--config").arg(config);
    }
    command
}

/// Runs a `flow` command to completion and returns its stdout.
pub(crate) async fn flow(dir: &Path, args: &[&str]) -> String {
    let output = flow_command(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("flow runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "flow {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value after `label` on its line of `output`.
pub(crate) fn field(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {output}"))
        .trim()
        .to_owned()
}

pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) url: String,
    banner: String,
}

/// Starts `flow serve` on a free port and waits for its banner.
async fn serve(dir: &Path, extra: &[&str]) -> Serve {
    serve_with_env(dir, extra, &[]).await
}

pub(crate) async fn serve_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut child = flow_command(dir)
        .args(["serve", "--port", "0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("flow serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let read_banner = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            let done = if extra.contains(&"--demo") {
                line.contains("Try:")
            } else {
                line.contains("API docs")
            };
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_banner)
        .await
        .expect("banner within 30 s");
    let url = field(&banner, "Flow is listening on");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Serve { child, url, banner }
}

/// How many leads a tenant has (matching `filter`, e.g. `source=crash&`), page by page.
pub(crate) async fn count_leads(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    filter: &str,
) -> usize {
    let mut count = 0;
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(format!("{base}/leads?{filter}limit=100{cursor}"))
            .header("x-tenant-key", key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        count += page["data"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return count,
        }
    }
}

async fn status(client: &reqwest::Client, url: String, key: &str) -> u16 {
    client
        .get(url)
        .header("x-tenant-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The status once a change made by another process has reached the server: at once on
/// SQLite; on PostgreSQL the server's key cache learns of it by NOTIFY, within moments.
async fn status_after_change(
    client: &reqwest::Client,
    url: String,
    key: &str,
    expected: u16,
) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let got = status(client, url.clone(), key).await;
        if got == expected || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn serve_demo_prints_working_keys_and_is_idempotent() {
    let dir = workspace().await;
    let client = reqwest::Client::new();
    let first = serve(dir.path(), &["--demo"]).await;
    assert!(
        first.banner.contains("x-tenant-key: demo-key\n"),
        "{}",
        first.banner
    );
    assert!(
        first.banner.contains("x-tenant-key: demo-key-b"),
        "{}",
        first.banner
    );
    let created = client
        .post(format!("{}/leads", first.url))
        .header("x-tenant-key", "demo-key")
        .json(&json!({"firstName": "Demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        status(&client, format!("{}/leads", first.url), "demo-key-b").await,
        200
    );
    // The demo user signs in to the dashboard, as an admin of both demo tenants.
    assert!(
        first
            .banner
            .contains("sign in as demo@flow.local / demo-password"),
        "{}",
        first.banner
    );
    let page = client.get(format!("{}/", first.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let session: Value = client
        .post(format!("{}/auth/login", first.url))
        .json(&json!({"email": "demo@flow.local", "password": "demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["role"], "admin", "{session}");
    assert_eq!(session["tenants"].as_array().unwrap().len(), 2, "{session}");
    let banner = first.banner.clone();
    drop(first);

    let second = serve(dir.path(), &["--demo"]).await;
    assert_eq!(
        banner
            .lines()
            .filter(|l| l.contains("Demo tenant"))
            .collect::<Vec<_>>(),
        second
            .banner
            .lines()
            .filter(|l| l.contains("Demo tenant"))
            .collect::<Vec<_>>(),
        "a second --demo start reuses the same tenants"
    );
    let leads: Value = client
        .get(format!("{}/leads", second.url))
        .header("x-tenant-key", "demo-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        leads["data"].as_array().unwrap().len(),
        1,
        "data survives a restart"
    );
}

#[tokio::test]
async fn tenant_and_key_commands_manage_access_of_a_running_server() {
    let dir = workspace().await;
    let client = reqwest::Client::new();
    let created = flow(dir.path(), &["tenant", "create", "Acme Corp"]).await;
    let admin_key = field(&created, "api key:");
    assert!(admin_key.starts_with("flow_sk_"), "{created}");
    assert!(
        field(&created, "tenant:").starts_with("acme-corp"),
        "{created}"
    );

    let server = serve(dir.path(), &[]).await;
    let leads = format!("{}/leads", server.url);
    assert_eq!(status(&client, leads.clone(), &admin_key).await, 200);

    let reader = flow(
        dir.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme-corp",
            "--name",
            "reader",
            "--permissions",
            "read:leads",
        ],
    )
    .await;
    let reader_key = field(&reader, "api key:");
    let reader_id = field(&reader, "key id:");
    assert_eq!(status(&client, leads.clone(), &reader_key).await, 200);
    let write = client
        .post(&leads)
        .header("x-tenant-key", &reader_key)
        .json(&json!({"firstName": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);

    // The CLI makes keys by the same rules as POST /api-keys.
    for bad in [
        &["--rate-limit", "1000001"][..],
        &["--rate-limit", "0"][..],
        &["--permissions", ""][..],
        &["--apps", "Not An App"][..],
    ] {
        let refused = flow_command(dir.path())
            .args(["key", "create", "--tenant", "acme-corp"])
            .args(bad)
            .output()
            .await
            .unwrap();
        assert!(!refused.status.success(), "{bad:?} was accepted");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("must be"),
            "{bad:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }

    let listed = flow(dir.path(), &["key", "list", "--tenant", "acme-corp"]).await;
    assert!(listed.contains(&reader_id), "{listed}");
    assert!(
        !listed.contains(&reader_key),
        "key list must never print secrets: {listed}"
    );

    flow(
        dir.path(),
        &["key", "revoke", "--tenant", "acme-corp", &reader_id],
    )
    .await;
    assert_eq!(
        status_after_change(&client, leads.clone(), &reader_key, 401).await,
        401
    );
    assert_eq!(status(&client, leads.clone(), &admin_key).await, 200);

    // The first admin of the dashboard, with a generated password shown once.
    let admin = flow(
        dir.path(),
        &[
            "user",
            "create",
            "--tenant",
            "acme-corp",
            "--email",
            "boss@acme.test",
        ],
    )
    .await;
    let password = field(&admin, "password:");
    let login = |password: String| {
        client
            .post(format!("{}/auth/login", server.url))
            .json(&json!({"email": "boss@acme.test", "password": password}))
            .send()
    };
    let signed_in: Value = login(password.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(signed_in["role"], "admin", "{signed_in}");
    assert_eq!(login("wrong password".into()).await.unwrap().status(), 401);

    flow(dir.path(), &["tenant", "deactivate", "acme-corp"]).await;
    assert_eq!(
        status_after_change(&client, leads.clone(), &admin_key, 401).await,
        401
    );
    flow(dir.path(), &["tenant", "activate", "acme-corp"]).await;
    assert_eq!(
        status_after_change(&client, leads, &admin_key, 200).await,
        200
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_writes_nothing_half() {
    let dir = workspace().await;
    let created = flow(dir.path(), &["tenant", "create", "Shutdown"]).await;
    let key = field(&created, "api key:");
    let mut server = serve(dir.path(), &[]).await;
    let client = reqwest::Client::new();

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, url, key) = (client.clone(), format!("{}/leads", server.url), key.clone());
            tokio::spawn(async move {
                let mut created = 0;
                for i in 0..500 {
                    let sent = client
                        .post(&url)
                        .header("x-tenant-key", &key)
                        .json(&json!({"firstName": format!("W{w}N{i}")}))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 201 => {
                            // A 201 must come with a complete body.
                            let body: Value =
                                response.json().await.expect("complete response body");
                            assert!(body["id"].is_string());
                            created += 1;
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => break,
                    }
                }
                created
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(exit.success(), "flow exits cleanly on SIGTERM: {exit:?}");

    let mut acknowledged = 0;
    for writer in writers {
        acknowledged += writer.await.unwrap();
    }
    assert!(acknowledged > 0, "some writes happened before the signal");

    let restarted = serve(dir.path(), &[]).await;
    // Read the whole event log, page by page.
    let mut lead_events = 0;
    let mut since = 0;
    loop {
        let log: Value = client
            .get(format!(
                "{}/events/log?limit=1000&since={since}",
                restarted.url
            ))
            .header("x-tenant-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = log["data"].as_array().unwrap();
        let Some(last) = page.last() else { break };
        since = last["seq"].as_i64().unwrap();
        lead_events += page
            .iter()
            .filter(|e| e["event"]["type"] == "LEAD_CREATED")
            .count();
    }
    let stored = count_leads(&client, &restarted.url, &key, "").await;
    assert_eq!(
        stored, acknowledged,
        "every acknowledged lead is stored, and only those"
    );
    assert_eq!(lead_events, stored, "every stored lead has its event");
}

#[tokio::test]
async fn a_job_survives_kill_9_of_its_worker_and_completes_once() {
    let dir = workspace().await;
    let key = field(
        &flow(dir.path(), &["tenant", "create", "Crash"]).await,
        "api key:",
    );
    // Short enough that the dead worker's lease runs out soon, long enough that the live
    // worker's extensions (SQLite: queued behind the import's own write transactions, in a
    // debug build, on a busy 2-core CI machine) arrive in time. At 2 s a loaded run saw the
    // job taken over again and again without finishing within a minute.
    let env = [("FLOW_WORKER_LEASE_SECS", "5")];
    let mut server = serve_with_env(dir.path(), &[], &env).await;
    let client = reqwest::Client::new();
    let rows = 5000;
    let mut file = String::from("firstName,email,source\n");
    for i in 0..rows {
        file.push_str(&format!("Crash{i},crash{i}@example.com,crash\n"));
    }
    let accepted: Value = client
        .post(format!("{}/leads/import", server.url))
        .header("x-tenant-key", &key)
        .header("content-type", "text/csv")
        .body(file)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_url = accepted["statusUrl"].as_str().expect("a job").to_owned();
    let job = |base: String| {
        let (client, key, job_url) = (client.clone(), key.clone(), job_url.clone());
        async move {
            client
                .get(format!("{base}{job_url}"))
                .header("x-tenant-key", &key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Kill the process once the job is under way, not done.
    let mut killed_at = None;
    for _ in 0..2000 {
        let current = job(server.url.clone()).await;
        let processed = current["progress"]["processed"].as_u64().unwrap_or(0);
        if processed > 0 {
            assert!(
                processed < rows as u64,
                "the job finished before the kill: make the file bigger"
            );
            killed_at = Some(processed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = killed_at.expect("the job started");
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    let restarted = serve_with_env(dir.path(), &[], &env).await;
    let mut finished = Value::Null;
    for _ in 0..600 {
        finished = job(restarted.url.clone()).await;
        if finished["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished["state"], "completed", "{finished}");
    // At least once more: on a loaded machine a heartbeat can come too late and another
    // worker take the job over again; the rows below must still be imported exactly once.
    assert!(
        finished["attempts"].as_u64().unwrap() >= 2,
        "taken again after the dead worker's lease ran out: {finished}"
    );
    let result = &finished["result"];
    // The later attempt resumes after the chunks the first committed, with their counts:
    // rows the job itself created are not reported as duplicates.
    assert_eq!(
        (result["created"].as_u64(), result["duplicates"].as_u64()),
        (Some(rows as u64), Some(0)),
        "after a kill at {killed_at}+ rows: {result}"
    );
    let stored = count_leads(&client, &restarted.url, &key, "source=crash&").await;
    assert_eq!(stored, rows, "every row imported exactly once");
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_tenant_and_a_tampered_one_is_refused() {
    let dir = workspace().await;
    let key = field(
        &flow(dir.path(), &["tenant", "create", "Source"]).await,
        "api key:",
    );
    flow(dir.path(), &["tenant", "create", "Target"]).await;
    let server = serve_with_env(dir.path(), &[], &[("FLOW_WORKER_POLL_MS", "20")]).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", server.url))
            .header("x-tenant-key", &key)
            .json(&body)
            .send()
    };
    for i in 0..30 {
        let lead: Value = post(
            "/leads",
            json!({"firstName": format!("B{i}"), "email": format!("b{i}@example.com")}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if i == 0 {
            post("/deals", json!({"title": "Deal", "amount": 5, "contactId": lead["contactId"], "leadId": lead["id"]}))
                .await
                .unwrap();
        }
    }
    let accepted: Value = post("/admin/backups", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_url = accepted["statusUrl"].as_str().expect("a job").to_owned();
    let mut job = Value::Null;
    for _ in 0..400 {
        job = client
            .get(format!("{}{job_url}", server.url))
            .header("x-tenant-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(job["state"], "completed", "{job}");
    let counts = &job["result"]["counts"];
    assert_eq!(
        (
            counts["leads"].as_u64(),
            counts["contacts"].as_u64(),
            counts["deals"].as_u64()
        ),
        (Some(30), Some(30), Some(1))
    );
    let path = job["result"]["path"].as_str().unwrap().to_owned();
    assert!(
        path.starts_with("backups/"),
        "relative to the data dir, not the server's layout: {path}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let file = dir.path().join(&path);
        assert_eq!(mode(&file), 0o600, "the backup file");
        assert_eq!(mode(file.parent().unwrap()), 0o700, "the backup directory");
        if crate::helpers::test_database_url().await.is_none() {
            assert_eq!(mode(&dir.path().join("flow.db")), 0o600, "the database");
            assert_eq!(mode(&dir.path().join("flow.db-wal")), 0o600, "the WAL");
            assert_eq!(mode(dir.path()), 0o700, "the data directory");
        }
    }
    let log: Value = client
        .get(format!("{}/events/log?limit=1000", server.url))
        .header("x-tenant-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"]["type"] == "BACKUP_COMPLETED"));

    let restored = flow(dir.path(), &["restore", "--tenant", "target", &path]).await;
    assert!(
        restored.contains("30 contacts, 30 leads, 1 deals"),
        "{restored}"
    );
    // Not twice: the target has data now.
    let again = flow_command(dir.path())
        .args(["restore", "--tenant", "target", &path])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());

    flow(dir.path(), &["tenant", "create", "Third"]).await;
    let file = dir.path().join(&path);
    let mut contents = std::fs::read_to_string(&file).unwrap();
    contents = contents.replacen("B1", "X1", 1);
    std::fs::write(&file, contents).unwrap();
    let tampered = flow_command(dir.path())
        .args(["restore", "--tenant", "third", &path])
        .output()
        .await
        .unwrap();
    assert!(!tampered.status.success());
    assert!(
        String::from_utf8_lossy(&tampered.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );
}

#[tokio::test]
async fn migrate_does_not_print_the_database_password() {
    let dir = workspace().await;
    // On the PostgreSQL run the test server trusts local connections, so a password in
    // the URL is accepted and ignored; on SQLite the URL has none to show.
    if let Some(url) = crate::helpers::test_database_url().await {
        let with_password = url.replacen("://flow_app@", "://flow_app:hunter2@", 1);
        assert_ne!(with_password, url, "the test URL names flow_app: {url}");
        std::fs::write(
            dir.path().join("flow.toml"),
            format!("database_url = {with_password:?}\n"),
        )
        .unwrap();
    }
    let printed = flow(dir.path(), &["migrate"]).await;
    assert!(printed.contains("database is up to date"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    // Nor when the database cannot be reached.
    let unreachable = flow_command(dir.path())
        .args([
            "--database-url",
            "postgres://flow_owner:hunter2@127.0.0.1:9/flow",
            "migrate",
        ])
        .output()
        .await
        .unwrap();
    assert!(!unreachable.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&unreachable.stdout),
        String::from_utf8_lossy(&unreachable.stderr)
    );
    assert!(!said.contains("hunter2"), "{said}");
}

#[tokio::test]
async fn serve_refuses_a_role_that_is_not_held_to_row_level_security() {
    if std::env::var("FLOW_TEST_BACKEND").as_deref() != Ok("postgres") {
        eprintln!("this test runs in the PostgreSQL run of the suite");
        return;
    }
    let server = flow_store_postgres::testing::server_url().expect("FLOW_TEST_POSTGRES");
    let db = flow_store_postgres::testing::TestDatabase::create_on(&server).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.toml"),
        format!("database_url = {:?}\n", db.owner_url),
    )
    .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        flow_command(dir.path())
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .output(),
    )
    .await
    .expect("serve gives up at once")
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("refusing to serve") && said.contains("owns Flow's tables"),
        "{said}"
    );
    // Allowed explicitly, it starts (with a warning in its log).
    let mut started = serve_with_env(
        dir.path(),
        &[],
        &[("FLOW_DB_ALLOW_PRIVILEGED_ROLE", "true")],
    )
    .await;
    started.child.start_kill().unwrap();
    started.child.wait().await.unwrap();
}
