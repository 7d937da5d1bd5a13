//! Flow as a cluster: three `flow serve` processes on one PostgreSQL of their own (so the
//! test can restart it without disturbing the other tests).

use std::{path::Path, time::Duration};

use flow_store::Store;
use flow_store_postgres::{testing::TestDatabase, PgOptions, PgStore};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::cli::{count_leads, field, flow, serve_with_env, Serve};

const POSTGRES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres");

/// A PostgreSQL server of the test's own, torn down on drop.
struct OwnPostgres {
    url: String,
    dir: String,
}

impl OwnPostgres {
    fn start() -> Self {
        let output = std::process::Command::new(POSTGRES_SCRIPT)
            .arg("start")
            .output()
            .expect("scripts/postgres runs");
        assert!(
            output.status.success(),
            "starting PostgreSQL failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out = String::from_utf8(output.stdout).unwrap();
        let (url, dir) = out.trim().split_once(' ').expect("URL and directory");
        Self {
            url: url.to_owned(),
            dir: dir.to_owned(),
        }
    }

    fn run(&self, command: &str) {
        let status = std::process::Command::new(POSTGRES_SCRIPT)
            .args([command, &self.dir])
            .status()
            .unwrap();
        assert!(status.success(), "scripts/postgres {command} failed");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(POSTGRES_SCRIPT)
            .args(["stop", &self.dir])
            .status();
    }
}

async fn get_json(client: &reqwest::Client, url: String, key: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .header("x-tenant-key", key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create_lead(client: &reqwest::Client, base: &str, key: &str, name: &str) -> u16 {
    client
        .post(format!("{base}/leads"))
        .header("x-tenant-key", key)
        .json(&json!({"firstName": name, "source": "cluster"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Sums a counter over the label sets of one `/metrics` page that contain `labels`.
async fn metric(client: &reqwest::Client, base: &str, name: &str, labels: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame, within 20 s.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket stays open")
            .expect("the socket stays healthy");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// A socket on `/events` of `base`, and the sequence number its welcome reported.
async fn connect(base: &str, key: &str) -> (Socket, i64) {
    let mut request = format!("{}/events", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", key.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let welcome = next_frame(&mut socket).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (socket, welcome["seq"].as_i64().unwrap())
}

async fn start_instances(dir: &Path) -> Vec<Serve> {
    // A lease long enough that a busy CI machine does not make live workers lose their
    // jobs to takeovers (which, past a job's last attempt, now dead-letter it), short
    // enough that a killed instance's job is taken over within the test's deadline.
    let env = [
        ("FLOW_WORKER_LEASE_SECS", "5"),
        ("FLOW_WORKER_POLL_MS", "200"),
    ];
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(serve_with_env(dir, &[], &env).await);
    }
    servers
}

#[tokio::test]
async fn three_instances_share_events_and_jobs_and_survive_a_crash_and_a_database_restart() {
    if std::env::var("FLOW_TEST_BACKEND").as_deref() != Ok("postgres") {
        eprintln!("the cluster test runs in the PostgreSQL run of the suite");
        return;
    }
    let postgres = OwnPostgres::start();
    let db = TestDatabase::create_on(&postgres.url).await;
    let owner = PgStore::open(&db.owner_url, &PgOptions::default())
        .await
        .unwrap();
    owner.migrate().await.unwrap();
    owner.close().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.toml"),
        format!(
            "database_url = {:?}\nsecret_key = \"cluster-test-secret-shared-by-all-instances\"\n",
            db.app_url
        ),
    )
    .unwrap();
    let key = field(
        &flow(dir.path(), &["tenant", "create", "Cluster"]).await,
        "api key:",
    );
    let mut servers = start_instances(dir.path()).await;
    let client = reqwest::Client::new();

    // Events written through the second and third instance reach a socket on the first,
    // in order and without gaps.
    let (mut socket, welcome_seq) = connect(&servers[0].url, &key).await;
    let writes = 40;
    let writers: Vec<_> = [1, 2]
        .into_iter()
        .map(|i| {
            let (client, base, key) = (client.clone(), servers[i].url.clone(), key.clone());
            tokio::spawn(async move {
                for n in 0..writes / 2 {
                    assert_eq!(
                        create_lead(&client, &base, &key, &format!("I{i}n{n}")).await,
                        201
                    );
                }
            })
        })
        .collect();
    // Every event frame, not only LEAD_CREATED: a create writes more than one event.
    let (mut seqs, mut created) = (Vec::new(), 0);
    while created < writes {
        let frame = next_frame(&mut socket).await;
        if frame["type"] == "event" {
            seqs.push(frame["seq"].as_i64().unwrap());
            created += usize::from(frame["event"]["type"] == "LEAD_CREATED");
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let first = welcome_seq + 1;
    let expected: Vec<i64> = (first..first + seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "in order, no gap, no duplicate");

    // Jobs enqueued through one instance are shared by all three.
    let jobs = 300;
    let batch: Vec<Value> = (0..jobs)
        .map(|n| json!({"kind": "ping", "payload": {"n": n}}))
        .collect();
    let accepted = client
        .post(format!(
            "{}/admin/queues/analytics-processing/jobs",
            servers[0].url
        ))
        .header("x-tenant-key", &key)
        .json(&json!({"jobs": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let processed_by = |servers: &[Serve]| {
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        let client = client.clone();
        async move {
            let mut counts = Vec::new();
            for url in urls {
                counts.push(
                    metric(
                        &client,
                        &url,
                        "message_queue_processed_total",
                        "queue_name=\"analytics-processing\"",
                    )
                    .await as u64,
                );
            }
            counts
        }
    };
    let mut counts = Vec::new();
    for _ in 0..300 {
        counts = processed_by(&servers).await;
        if counts.iter().sum::<u64>() >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        counts.iter().sum::<u64>(),
        jobs,
        "each job ran once: {counts:?}"
    );
    assert!(
        counts.iter().filter(|&&n| n > 0).count() >= 2,
        "the work was shared: {counts:?}"
    );

    // kill -9 the instance running a long import: another one finishes it.
    let rows = 5000;
    let mut file = String::from("firstName,email,source\n");
    for i in 0..rows {
        file.push_str(&format!("Crash{i},crash{i}@example.com,crash\n"));
    }
    let accepted: Value = client
        .post(format!("{}/leads/import", servers[0].url))
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
    let mut runner = None;
    for _ in 0..2000 {
        for (i, server) in servers.iter().enumerate() {
            let running = metric(
                &client,
                &server.url,
                "message_queue_jobs_running",
                "lead-processing",
            )
            .await;
            if running > 0.0 {
                runner = Some(i);
            }
        }
        if runner.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let runner = runner.expect("some instance runs the import");
    let mut crashed = servers.remove(runner);
    crashed.child.start_kill().unwrap();
    crashed.child.wait().await.unwrap();
    let mut finished = Value::Null;
    for _ in 0..600 {
        finished = get_json(&client, format!("{}{job_url}", servers[0].url), &key)
            .await
            .1;
        if finished["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished["state"], "completed", "{finished}");
    assert!(
        finished["attempts"].as_u64().unwrap() >= 2,
        "taken over after the lease ran out: {finished}"
    );
    assert_eq!(
        count_leads(&client, &servers[0].url, &key, "source=crash&").await,
        rows,
        "every row imported exactly once"
    );

    // A socket on a surviving instance, to see the gateway recover as well.
    let (mut socket, _) = connect(&servers[0].url, &key).await;

    // The database restarts: requests in the gap fail cleanly with 503, then every
    // instance recovers without being restarted.
    postgres.run("down");
    // Each request waits out the pool's acquire timeout: ask all instances at once.
    let gap = futures::future::join_all(servers.iter().map(|server| {
        let (client, url, key) = (client.clone(), server.url.clone(), key.clone());
        async move {
            let leads = get_json(&client, format!("{url}/leads?limit=1"), &key).await;
            let health = client.get(format!("{url}/health")).send().await.unwrap();
            (leads, health.status().as_u16())
        }
    }))
    .await;
    for ((status, body), health) in gap {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
        assert_eq!(health, 503);
    }
    postgres.run("up");
    for server in &servers {
        let mut status = 0;
        for _ in 0..100 {
            status = create_lead(&client, &server.url, &key, "After").await;
            if status == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 201, "{} recovered", server.url);
    }
    // The gateway recovered too: the socket on the first instance sees the new leads.
    let mut after = 0;
    while after < servers.len() {
        let frame = next_frame(&mut socket).await;
        if frame["event"]["data"]["lead"]["firstName"] == "After" {
            after += 1;
        }
    }
}
