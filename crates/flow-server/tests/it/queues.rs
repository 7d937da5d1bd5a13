//! Durable queues: retries with backoff on a controllable clock, the dead-letter queue,
//! priorities, delays, idempotency, leases, concurrent workers, lead import end to end,
//! and the admin API.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_app::services::keys::KeySpec;
use flow_jobs::{
    enqueue_in, Clock, Enqueue, ExecutionOutcome, JobError, JobMetrics, Processor, Processors,
    Queue, Worker,
};
use flow_store::{ClaimRequest, Job, JobId, Store, TenantId};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

/// A clock the test moves by hand.
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Utc::now())))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Fails the first `failures` attempts of each job (retryably), then succeeds; records
/// the order in which jobs ran.
#[derive(Default)]
struct Flaky {
    failures: u32,
    permanent: bool,
    attempts: Mutex<HashMap<JobId, u32>>,
    order: Mutex<Vec<String>>,
}

#[async_trait]
impl Processor for Flaky {
    async fn process(&self, _store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(job.id).or_default();
            *n += 1;
            *n
        };
        self.order
            .lock()
            .unwrap()
            .push(job.payload["name"].as_str().unwrap_or_default().to_owned());
        if attempt <= self.failures {
            return Err(if self.permanent {
                JobError::Permanent(format!("attempt {attempt} is broken for good"))
            } else {
                JobError::Retryable(format!("attempt {attempt} timed out"))
            });
        }
        Ok(json!({ "attempt": attempt }))
    }
}

async fn app_without_workers() -> TestApp {
    spawn_app_with(|c| c.worker_concurrency = 0).await
}

fn worker(app: &TestApp, processor: Arc<Flaky>, clock: Arc<ManualClock>) -> Worker {
    let mut processors = Processors::default();
    for queue in [
        Queue::LeadProcessing,
        Queue::AnalyticsProcessing,
        Queue::EmailSync,
    ] {
        processors.register(queue, "test", processor.clone());
    }
    Worker::new(
        app.store.clone(),
        processors,
        clock,
        JobMetrics::unregistered(),
    )
}

async fn enqueue(app: &TestApp, tenant: TenantId, mut request: Enqueue) -> (Job, bool) {
    if request.kind.is_empty() {
        request.kind = "test".into();
    }
    let mut tx = app.store.begin(tenant).await.unwrap();
    let result = enqueue_in(&mut *tx, request).await.unwrap();
    tx.commit().await.unwrap();
    result
}

fn job(queue: &'static str, name: &str, at: DateTime<Utc>) -> Enqueue {
    let queue = Queue::parse(queue).expect("one of the spec's queues");
    let mut request = Enqueue::new(queue, "test", json!({ "name": name }));
    request.run_at = at;
    request
}

async fn job_json(app: &TestApp, id: JobId) -> Value {
    app.get(&format!("/jobs/{id}"), &app.a.key)
        .await
        .expect(200)
        .body
}

#[tokio::test]
async fn failures_retry_with_backoff_then_land_in_the_dead_letter_queue() {
    let app = app_without_workers().await;
    let clock = ManualClock::new();
    let processor = Arc::new(Flaky {
        failures: 100,
        ..Flaky::default()
    });
    let worker = worker(&app, processor.clone(), clock.clone());
    let (job, _) = enqueue(
        &app,
        app.a.tenant.id,
        job("lead-processing", "flaky", clock.now()),
    )
    .await;
    assert_eq!(
        job.max_attempts, 4,
        "lead-processing: 3 retries after the first attempt"
    );

    // Attempt n fails and is due again after 1, 2, 4 s (with jitter: between half and all of it).
    for (attempt, full) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0)] {
        let before = clock.now();
        let ExecutionOutcome::Retrying(id, run_at) = worker.try_execute_task().await.unwrap()
        else {
            panic!("attempt {attempt} should be retried");
        };
        assert_eq!(id, job.id);
        let delay = (run_at - before).num_milliseconds() as f64 / 1000.0;
        assert!(
            delay >= full / 2.0 && delay <= full,
            "attempt {attempt}: retry after {delay} s"
        );
        assert_eq!(
            worker.try_execute_task().await.unwrap(),
            ExecutionOutcome::Idle,
            "not due yet"
        );
        clock.advance(Duration::from_secs_f64(full));
    }
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        ExecutionOutcome::Dead(job.id)
    );
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        ExecutionOutcome::Idle
    );

    let dead = job_json(&app, job.id).await;
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["attempts"], 4);
    let errors = dead["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 4, "the error history of every attempt");
    assert_eq!(errors[3]["message"], "attempt 4 timed out");

    // Requeue from the DLQ: a fresh set of attempts.
    let admin = "/admin/queues/lead-processing/jobs";
    let listed = app
        .get(&format!("{admin}?state=dead"), &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let requeued = app
        .post(&format!("{admin}/{}/retry", job.id), &app.a.key, json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(requeued["state"], "ready");
    assert_eq!(requeued["attempts"], 0);
    app.post(&format!("{admin}/{}/retry", job.id), &app.a.key, json!({}))
        .await
        .expect_error(409, "job_not_dead");
    // The dependency is back: the requeued job now succeeds on its first new attempt.
    let healthy = worker_with_failures(&app, 0, clock.clone());
    assert_eq!(
        healthy.try_execute_task().await.unwrap(),
        ExecutionOutcome::Completed(job.id)
    );
    let done = job_json(&app, job.id).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"]["attempt"], 1);
}

fn worker_with_failures(app: &TestApp, failures: u32, clock: Arc<ManualClock>) -> Worker {
    worker(
        app,
        Arc::new(Flaky {
            failures,
            ..Flaky::default()
        }),
        clock,
    )
}

#[tokio::test]
async fn permanent_errors_skip_the_retries_and_dead_jobs_can_be_deleted() {
    let app = app_without_workers().await;
    let clock = ManualClock::new();
    let worker = worker(
        &app,
        Arc::new(Flaky {
            failures: 1,
            permanent: true,
            ..Flaky::default()
        }),
        clock.clone(),
    );
    let (job, _) = enqueue(
        &app,
        app.a.tenant.id,
        job("email-sync", "bad input", clock.now()),
    )
    .await;
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        ExecutionOutcome::Dead(job.id)
    );
    let path = format!("/admin/queues/email-sync/jobs/{}", job.id);
    app.delete(
        &format!("/admin/queues/lead-processing/jobs/{}", job.id),
        &app.a.key,
    )
    .await
    .expect_error(404, "not_found");
    app.delete(&path, &app.a.key).await.expect(204);
    app.get(&format!("/jobs/{}", job.id), &app.a.key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn priorities_delays_and_idempotency_keys() {
    let app = app_without_workers().await;
    let clock = ManualClock::new();
    let processor = Arc::new(Flaky::default());
    let worker = worker(&app, processor.clone(), clock.clone());
    let now = clock.now();
    let tenant = app.a.tenant.id;
    enqueue(&app, tenant, job("analytics-processing", "low queue", now)).await;
    enqueue(&app, tenant, job("email-sync", "medium queue", now)).await;
    enqueue(&app, tenant, job("lead-processing", "high queue", now)).await;
    let mut urgent = job("lead-processing", "high queue, urgent", now);
    urgent.priority = 10;
    enqueue(&app, tenant, urgent).await;
    let later = job(
        "lead-processing",
        "delayed",
        now + chrono::Duration::seconds(30),
    );
    enqueue(&app, tenant, later).await;

    while worker.try_execute_task().await.unwrap() != ExecutionOutcome::Idle {}
    assert_eq!(
        *processor.order.lock().unwrap(),
        [
            "high queue, urgent",
            "high queue",
            "medium queue",
            "low queue"
        ],
        "queue priority first, then job priority; the delayed job waits"
    );
    clock.advance(Duration::from_secs(30));
    assert!(matches!(
        worker.try_execute_task().await.unwrap(),
        ExecutionOutcome::Completed(_)
    ));
    assert_eq!(processor.order.lock().unwrap().last().unwrap(), "delayed");

    let mut once = job("email-sync", "once", now);
    once.idempotency_key = Some("sync-2026-11-22".into());
    let (first, created) = enqueue(&app, tenant, once.clone()).await;
    assert!(created);
    let (second, created_again) = enqueue(&app, tenant, once.clone()).await;
    assert!(!created_again);
    assert_eq!(first.id, second.id);
    // Keys are per tenant.
    let (other_tenant, created_there) = enqueue(&app, app.b.tenant.id, once).await;
    assert!(created_there);
    assert_ne!(other_tenant.id, first.id);
}

/// What a worker takes from lead-processing (with a 60 s lease) before it dies without
/// reporting back.
async fn claimed_by_a_dying_worker(app: &TestApp, clock: &ManualClock) -> Vec<Job> {
    app.store
        .claim_jobs(&ClaimRequest {
            queues: vec!["lead-processing".into()],
            now: clock.now(),
            lease_until: clock.now() + chrono::Duration::seconds(60),
            limit: 10,
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_whose_last_attempt_stops_answering_goes_to_the_dead_letter_queue() {
    let app = app_without_workers().await;
    let clock = ManualClock::new();
    let mut request = job("lead-processing", "poison", clock.now());
    request.max_attempts = Some(2);
    let (job, _) = enqueue(&app, app.a.tenant.id, request).await;
    let other = worker_with_failures(&app, 0, clock.clone());
    // Both allowed attempts are taken by workers that die without reporting back.
    for attempt in 1..=2 {
        let taken = claimed_by_a_dying_worker(&app, &clock).await;
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].attempts, attempt);
        clock.advance(Duration::from_secs(61));
    }
    // The next worker to find it does not run it a third time.
    assert_eq!(
        other.try_execute_task().await.unwrap(),
        ExecutionOutcome::Dead(job.id)
    );
    let dead = job_json(&app, job.id).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    let errors = dead["errors"].as_array().unwrap();
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{dead}"
    );
    assert_eq!(
        other.try_execute_task().await.unwrap(),
        ExecutionOutcome::Idle
    );
}

#[tokio::test]
async fn an_expired_lease_hands_the_job_to_another_worker() {
    let app = app_without_workers().await;
    let clock = ManualClock::new();
    let (job, _) = enqueue(
        &app,
        app.a.tenant.id,
        job("lead-processing", "orphan", clock.now()),
    )
    .await;
    // A worker takes the job and dies before reporting back.
    let taken = claimed_by_a_dying_worker(&app, &clock).await;
    assert_eq!(taken.len(), 1);
    let other = worker_with_failures(&app, 0, clock.clone());
    assert_eq!(
        other.try_execute_task().await.unwrap(),
        ExecutionOutcome::Idle,
        "leased"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        other.try_execute_task().await.unwrap(),
        ExecutionOutcome::Completed(job.id)
    );
    let done = job_json(&app, job.id).await;
    assert_eq!(done["attempts"], 2);
    // The first worker's late report is refused: the attempt is no longer its.
    let late = app
        .store
        .settle_job(
            job.id,
            1,
            &flow_store::Settlement::Completed { result: json!({}) },
            Utc::now(),
        )
        .await;
    assert!(
        matches!(late, Err(flow_store::StoreError::NotFound)),
        "{late:?}"
    );
}

/// Runs until the test lets it finish.
struct Held(tokio::sync::Semaphore);

#[async_trait]
impl Processor for Held {
    async fn process(&self, _store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        self.0.acquire().await.expect("never closed").forget();
        Ok(job.payload.clone())
    }
}

#[tokio::test]
async fn a_long_job_keeps_its_lease_and_its_batch_mates_leases_alive() {
    let app = app_without_workers().await;
    let now = Utc::now();
    let (first, _) = enqueue(&app, app.a.tenant.id, job("lead-processing", "slow", now)).await;
    let (second, _) = enqueue(&app, app.a.tenant.id, job("lead-processing", "next", now)).await;
    let held = Arc::new(Held(tokio::sync::Semaphore::new(0)));
    let mut processors = Processors::default();
    processors.register(Queue::LeadProcessing, "test", held.clone());
    let mut worker = Worker::new(
        app.store.clone(),
        processors,
        Arc::new(flow_jobs::SystemClock),
        JobMetrics::unregistered(),
    );
    worker.lease = Duration::from_secs(3);
    let running = tokio::spawn(async move { worker.try_execute_batch(2).await });

    // Past the leases the claim gave (3 s), yet within the first heartbeat's (at 1 s, + 3 s):
    // both jobs are still held, the running one and the one waiting behind it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = Utc::now() + chrono::Duration::seconds(1);
    let taken = app
        .store
        .claim_jobs(&ClaimRequest {
            queues: vec!["lead-processing".into()],
            now: later,
            lease_until: later + chrono::Duration::seconds(60),
            limit: 10,
        })
        .await
        .unwrap();
    assert!(taken.is_empty(), "taken over while held: {taken:?}");

    held.0.add_permits(2);
    let outcomes = running.await.unwrap().unwrap();
    assert_eq!(
        outcomes,
        [
            ExecutionOutcome::Completed(first.id),
            ExecutionOutcome::Completed(second.id)
        ]
    );
    for id in [first.id, second.id] {
        let done = job_json(&app, id).await;
        assert_eq!(
            (done["state"].as_str(), done["attempts"].as_u64()),
            (Some("completed"), Some(1)),
            "{done}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_run_a_job_twice() {
    let app = app_without_workers().await;
    let now = Utc::now();
    for i in 0..200 {
        enqueue(
            &app,
            app.a.tenant.id,
            job("lead-processing", &format!("j{i}"), now),
        )
        .await;
    }
    let processor = Arc::new(Flaky::default());
    let clock = Arc::new(ManualClock(Mutex::new(now)));
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let worker = worker(&app, processor.clone(), clock.clone());
            tokio::spawn(async move {
                let mut done = 0;
                loop {
                    let outcomes = worker.try_execute_batch(5).await.unwrap();
                    if outcomes.is_empty() {
                        return done;
                    }
                    done += outcomes.len();
                }
            })
        })
        .collect();
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap();
    }
    assert_eq!(total, 200);
    let attempts = processor.attempts.lock().unwrap();
    assert_eq!(attempts.len(), 200);
    assert!(attempts.values().all(|n| *n == 1), "a job ran twice");
}

fn csv_file(rows: usize, first_bad: bool) -> String {
    let mut file = String::from("firstName,lastName,email,phone,company,source\n");
    for i in 0..rows {
        if first_bad && i == 3 {
            file.push_str("Bad,Row,not-an-email,,,\n");
            continue;
        }
        file.push_str(&format!(
            "Person{i},Import,person{i}@example.com,+45 1234 {i:04},Acme,fair\n"
        ));
    }
    file
}

async fn post_file(app: &TestApp, content_type: &str, body: String) -> crate::helpers::Reply {
    crate::helpers::send(
        app.client
            .post(app.url("/leads/import"))
            .header("x-tenant-key", &app.a.key)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

async fn wait_for_job(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let job = app
            .get(&format!("/jobs/{id}"), &app.a.key)
            .await
            .expect(200)
            .body;
        if job["state"] == "completed" || job["state"] == "dead" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

/// An import file of `rows` new leads whose emails start with `prefix`.
fn import_file(prefix: &str, rows: usize) -> String {
    let mut file = String::from("firstName,email,source\n");
    for i in 0..rows {
        file.push_str(&format!("{prefix}{i},{prefix}{i}@example.com,bulk\n"));
    }
    file
}

/// One tenant's big import must not stall another tenant's writes: on SQLite all writes
/// share one writer, and an import whose per-row duplicate check read the whole tenant
/// held it for seconds per chunk (tenant B's creates went from 3 ms to 1.7 s).
#[tokio::test]
async fn a_big_import_in_one_tenant_leaves_another_tenants_writes_fast() {
    let app = spawn_app_with(|_| {}).await;
    // The embedded writer is where imports and creates meet; PostgreSQL writes in
    // parallel, so a smaller tenant shows the same there at a fraction of the time.
    let (seeded, measured) = if app.store.backend() == "sqlite" {
        (12_000, 8_000)
    } else {
        (2_000, 1_000)
    };
    let seed = post_file(&app, "text/csv", import_file("seed", seeded))
        .await
        .expect(202)
        .body;
    let seed = wait_for_job(&app, seed["jobId"].as_str().unwrap()).await;
    assert_eq!(seed["result"]["created"], seeded, "{seed}");

    let import = post_file(&app, "text/csv", import_file("more", measured))
        .await
        .expect(202)
        .body;
    let job_url = format!("/jobs/{}", import["jobId"].as_str().unwrap());
    let mut latencies = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut checked = std::time::Instant::now();
    loop {
        // The job's state is read now and then, not between every two creates, so that
        // tenant B's writes keep arriving while the import runs.
        if checked.elapsed() > Duration::from_millis(100) {
            let job = app.get(&job_url, &app.a.key).await.expect(200).body;
            if job["state"] == "completed" {
                assert_eq!(job["result"]["created"], measured, "{job}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the import did not finish: {job}"
            );
            checked = std::time::Instant::now();
        }
        let started = std::time::Instant::now();
        app.post(
            "/leads",
            &app.b.key,
            json!({ "firstName": "Bea", "source": "fair" }),
        )
        .await
        .expect(201);
        latencies.push(started.elapsed());
    }
    assert!(
        latencies.len() >= 10,
        "tenant B wrote only {} leads during the import",
        latencies.len()
    );
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let p50 = latencies[latencies.len() / 2];
    // Generous for a loaded CI machine; the stalls this guards against were seconds long.
    assert!(
        p99 < Duration::from_millis(500),
        "tenant B's creates during A's import: p50 {p50:?}, p99 {p99:?} over {} requests",
        latencies.len()
    );
}

#[tokio::test]
async fn lead_import_runs_in_the_queue_with_progress_row_errors_and_no_duplicates() {
    let app = spawn_app_with(|_| {}).await;
    let file = csv_file(250, true);
    let accepted = post_file(&app, "text/csv", file.clone())
        .await
        .expect(202)
        .body;
    let job_id = accepted["jobId"].as_str().unwrap().to_owned();
    assert_eq!(accepted["statusUrl"], format!("/jobs/{job_id}"));
    let job = wait_for_job(&app, &job_id).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["created"], 249);
    assert_eq!(job["result"]["failed"], 1);
    assert_eq!(job["result"]["errors"][0]["row"], 4);
    assert_eq!(job["result"]["errors"][0]["code"], "validation_failed");
    assert_eq!(job["progress"]["processed"], 250);
    // Progress went out as events: one per batch of 100 rows, the last one completing.
    let log = app
        .get("/events/log?limit=1000", &app.a.key)
        .await
        .expect(200)
        .body;
    let kinds: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["data"]["jobId"] == job_id.as_str())
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["JOB_PROGRESS", "JOB_PROGRESS", "JOB_COMPLETED"]);
    assert_eq!(
        app.list_all("/leads?source=fair", &app.a.key).await.len(),
        249
    );

    // The same file again is the same job.
    let again = post_file(&app, "text/csv", file).await.expect(202).body;
    assert_eq!(again["jobId"], job_id.as_str());

    // Another file overlapping it creates only the new rows.
    let ndjson = (245..255)
        .map(|i| json!({"firstName": format!("Person{i}"), "email": format!("person{i}@example.com"), "source": "fair"}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let second = post_file(&app, "application/x-ndjson", ndjson)
        .await
        .expect(202)
        .body;
    let second = wait_for_job(&app, second["jobId"].as_str().unwrap()).await;
    assert_eq!(second["result"]["duplicates"], 5);
    assert_eq!(second["result"]["created"], 5);
    assert_eq!(
        app.list_all("/leads?source=fair", &app.a.key).await.len(),
        254
    );

    // Tenant B sees none of it.
    app.get(&format!("/jobs/{job_id}"), &app.b.key)
        .await
        .expect_error(404, "not_found");

    post_file(&app, "text/plain", "x".into())
        .await
        .expect_error(415, "unsupported_media_type");
    post_file(&app, "text/csv", "name,email\nA,a@b.c\n".into())
        .await
        .expect_error(422, "validation_failed");
    post_file(&app, "text/csv", "firstName,email\n".into())
        .await
        .expect_error(422, "validation_failed");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"message_queue_processed_total{queue_name="lead-processing",status="completed"} 2"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("message_queue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn the_admin_api_needs_admin_and_shows_only_the_tenants_jobs() {
    let app = app_without_workers().await;
    let now = Utc::now();
    enqueue(&app, app.a.tenant.id, job("lead-processing", "a1", now)).await;
    enqueue(
        &app,
        app.a.tenant.id,
        job("lead-processing", "a2", now + chrono::Duration::hours(1)),
    )
    .await;
    let (b_job, _) = enqueue(&app, app.b.tenant.id, job("lead-processing", "b1", now)).await;

    let overview = app.get("/admin/queues", &app.a.key).await.expect(200).body;
    let queues = overview.as_array().unwrap();
    assert_eq!(queues.len(), 6);
    let lead = queues
        .iter()
        .find(|q| q["name"] == "lead-processing")
        .unwrap();
    assert_eq!(
        (lead["ready"].as_u64(), lead["delayed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(lead["priority"], 3);
    assert!(lead["oldestReadyAgeSeconds"].is_number());

    let listed = app
        .get("/admin/queues/lead-processing/jobs", &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 2, "only tenant A's jobs");
    app.post(
        &format!("/admin/queues/lead-processing/jobs/{}/retry", b_job.id),
        &app.a.key,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    app.get("/admin/queues/no-such-queue/jobs", &app.a.key)
        .await
        .expect_error(404, "not_found");

    let reader = app
        .key_for_a(KeySpec {
            name: "r".into(),
            permissions: vec!["read:*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 100,
        })
        .await;
    app.get("/admin/queues", &reader)
        .await
        .expect_error(403, "permission_denied");
}

#[tokio::test]
async fn a_compliance_check_reports_and_announces_itself() {
    let app = spawn_app_with(|_| {}).await;
    let key = &app.a.key;
    app.post(
        "/contacts",
        key,
        json!({"firstName": "NoConsent", "email": "nc@example.com"}),
    )
    .await
    .expect(201);
    app.post(
        "/contacts",
        key,
        json!({"firstName": "Fine", "email": "ok@example.com", "consent": true, "source": "web"}),
    )
    .await
    .expect(201);
    let accepted = app
        .post("/compliance/checks", key, json!({}))
        .await
        .expect(202)
        .body;
    let id = accepted["jobId"].as_str().unwrap();
    let mut check = Value::Null;
    for _ in 0..200 {
        check = app
            .get(&format!("/compliance/checks/{id}"), key)
            .await
            .expect(200)
            .body;
        if check["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(check["state"], "completed", "{check}");
    let summary = &check["result"]["summary"];
    assert_eq!(summary["contactsWithoutConsent"], 1);
    assert_eq!(summary["leadsUntouchedFor30Days"], 0);
    assert_eq!(summary["keysUnusedFor90Days"], 0);
    assert_eq!(check["result"]["scanned"]["contacts"], 2);
    let log = app.get("/events/log", key).await.expect(200).body;
    let completed = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "COMPLIANCE_CHECK_COMPLETED");
    assert_eq!(
        completed.expect("a COMPLIANCE_CHECK_COMPLETED event")["event"]["data"]["checkId"],
        id
    );
    app.get(&format!("/compliance/checks/{id}"), &app.b.key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn email_sync_upserts_senders_and_logs_each_email_once() {
    let app = spawn_app_with(|_| {}).await;
    let key = &app.a.key;
    let batch = json!({"emails": [
        {"from": "Jane@Example.com", "name": "Jane Doe", "date": "2026-11-20T09:00:00Z", "subject": "Pricing"},
        {"from": "jane@example.com", "name": "Jane Doe", "date": "2026-11-21T09:00:00Z", "subject": "Re: Pricing"},
        {"from": "ole@example.dk", "date": "2026-11-21T10:00:00Z"}
    ]});
    let first = app
        .post("/contacts/email-sync", key, batch.clone())
        .await
        .expect(202)
        .body;
    let first = wait_for_job(&app, first["jobId"].as_str().unwrap()).await;
    assert_eq!(first["result"]["contactsCreated"], 2, "{first}");
    assert_eq!(first["result"]["emailsLogged"], 3);
    let jane = app
        .get("/contacts?email=jane@example.com", key)
        .await
        .expect(200)
        .body;
    let jane = &jane["data"][0];
    assert_eq!(jane["firstName"], "Jane");
    assert_eq!(jane["lastName"], "Doe");
    let emails = app
        .get(
            &format!(
                "/activities?entityId={}&type=EMAIL",
                jane["id"].as_str().unwrap()
            ),
            key,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(emails["data"].as_array().unwrap().len(), 2);

    // The same batch again logs nothing twice.
    let again = app
        .post("/contacts/email-sync", key, batch)
        .await
        .expect(202)
        .body;
    let again = wait_for_job(&app, again["jobId"].as_str().unwrap()).await;
    assert_eq!(again["result"]["alreadyLogged"], 3, "{again}");
    assert_eq!(again["result"]["contactsCreated"], 0);

    app.post("/contacts/email-sync", key, json!({"emails": []}))
        .await
        .expect_error(422, "validation_failed");
    app.post(
        "/contacts/email-sync",
        key,
        json!({"emails": [{"from": "nope", "date": "2026-11-21T10:00:00Z"}]}),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn qualifying_and_converting_a_lead_runs_the_follow_ups() {
    let app = spawn_app_with(|c| c.worker_poll_ms = 20).await;
    let key = &app.a.key;
    let lead = app
        .post("/leads", key, json!({"firstName": "Kim", "lastName": "Berg", "email": "kim@berg.dk", "company": "Berg ApS"}))
        .await
        .expect(201)
        .body;
    let id = lead["id"].as_str().unwrap();
    for status in ["CONTACTED", "QUALIFIED", "CONVERTED"] {
        app.patch(
            &format!("/leads/{id}/status"),
            key,
            json!({"status": status}),
        )
        .await
        .expect(200);
    }
    let contact = lead["contactId"].as_str().unwrap();
    let mut deals = Value::Null;
    for _ in 0..200 {
        deals = app
            .get(&format!("/deals?contactId={contact}"), key)
            .await
            .expect(200)
            .body;
        if !deals["data"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deal = &deals["data"][0];
    assert_eq!(deal["leadId"], id, "{deals}");
    assert_eq!(deal["title"], "Berg ApS (Kim Berg)");
    let mut types = Vec::new();
    for _ in 0..200 {
        let activities = app
            .get(&format!("/activities?entityId={id}"), key)
            .await
            .expect(200)
            .body;
        types = activities["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap().to_owned())
            .collect();
        if types.contains(&"FOLLOW_UP".to_owned()) && types.contains(&"DEAL_OPENED".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(types.contains(&"FOLLOW_UP".to_owned()), "{types:?}");
    assert!(types.contains(&"DEAL_OPENED".to_owned()), "{types:?}");
    let log = app
        .get("/events/log?limit=1000", key)
        .await
        .expect(200)
        .body;
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"]["type"] == "DEAL_CREATED"));
}

#[tokio::test]
async fn jobs_enqueued_over_the_api_run_with_their_options() {
    let app = spawn_app_with(|c| c.worker_poll_ms = 20).await;
    let key = &app.a.key;
    let path = "/admin/queues/analytics-processing/jobs";
    let jobs = app
        .post(path, key, json!({"jobs": [
            {"kind": "ping", "payload": {"n": 1}},
            {"kind": "ping", "payload": {"n": 2}, "priority": 5, "maxAttempts": 7, "idempotencyKey": "k-2"},
            {"kind": "ping", "payload": {"n": 3}, "delayMs": 600000}
        ]}))
        .await
        .expect(202)
        .body;
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs[1]["maxAttempts"], 7);
    assert_eq!(jobs[0]["maxAttempts"], 2, "analytics-processing: 1 retry");
    let first = wait_for_job(&app, jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(first["result"]["pong"]["n"], 1);
    wait_for_job(&app, jobs[1]["id"].as_str().unwrap()).await;
    let delayed = app
        .get(&format!("/jobs/{}", jobs[2]["id"].as_str().unwrap()), key)
        .await
        .expect(200)
        .body;
    assert_eq!(delayed["state"], "ready", "due in ten minutes");

    let repeat = app
        .post(
            path,
            key,
            json!({"jobs": [{"kind": "ping", "idempotencyKey": "k-2"}]}),
        )
        .await
        .expect(202)
        .body;
    assert_eq!(repeat[0]["id"], jobs[1]["id"]);

    app.post(path, key, json!({"jobs": []}))
        .await
        .expect_error(422, "validation_failed");
    app.post(
        "/admin/queues/nope/jobs",
        key,
        json!({"jobs": [{"kind": "ping"}]}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        path,
        key,
        json!({"jobs": [{"kind": "ping", "maxAttempts": 0}]}),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn the_admin_enqueue_route_refuses_kinds_that_act_for_someone() {
    let app = app_without_workers().await;
    // A key that may only run queues: these payloads would make it act as the admin.
    let queues_only = app
        .key_for_a(KeySpec {
            name: "queue operator".into(),
            permissions: vec!["admin:queues".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let admin = json!({ "type": "user", "id": "01a00000-0000-7000-8000-000000000000" });
    for (queue, job) in [
        (
            "lead-processing",
            json!({ "kind": "import_leads", "payload": { "actor": admin, "format": "csv", "data": "firstName\nX" } }),
        ),
        (
            "email-sync",
            json!({ "kind": "sync_headers", "payload": { "actor": admin, "emails": [] } }),
        ),
        (
            "voice-processing",
            json!({ "kind": "voice.audio", "payload": { "actor": admin, "permissions": ["*"] } }),
        ),
        (
            "lead-processing",
            json!({ "kind": "lead_qualified", "payload": {} }),
        ),
        (
            "analytics-processing",
            json!({ "kind": "export", "payload": {} }),
        ),
        (
            "analytics-processing",
            json!({ "kind": "made_up", "payload": {} }),
        ),
    ] {
        let refused = app
            .post(
                &format!("/admin/queues/{queue}/jobs"),
                &queues_only,
                json!({ "jobs": [job] }),
            )
            .await
            .expect_error(422, "validation_failed");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ping"),
            "{}",
            refused.body
        );
    }
    let listed = app
        .get("/admin/queues/lead-processing/jobs", &queues_only)
        .await
        .expect(200)
        .body;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // The kinds that only say what to do are taken, in their own queue.
    for (queue, kind) in [
        ("analytics-processing", "rollup"),
        ("backup-operations", "export"),
        ("compliance-checks", "scan"),
        ("email-sync", "ping"),
    ] {
        app.post(
            &format!("/admin/queues/{queue}/jobs"),
            &queues_only,
            json!({ "jobs": [{ "kind": kind, "payload": {} }] }),
        )
        .await
        .expect(202);
    }
}

#[tokio::test]
async fn business_metrics_serve_the_daily_rollup() {
    let app = spawn_app_with(|c| c.worker_poll_ms = 20).await;
    let key = &app.a.key;
    for (i, source) in ["web", "web", "voice"].iter().enumerate() {
        let lead = app
            .post(
                "/leads",
                key,
                json!({"firstName": format!("R{i}"), "source": source}),
            )
            .await
            .expect(201)
            .body;
        if i == 0 {
            let path = format!("/leads/{}/status", lead["id"].as_str().unwrap());
            for status in ["CONTACTED", "QUALIFIED", "CONVERTED"] {
                app.patch(&path, key, json!({"status": status}))
                    .await
                    .expect(200);
            }
        }
    }
    let accepted = app
        .post("/metrics/business/rollup", key, json!({}))
        .await
        .expect(202)
        .body;
    wait_for_job(&app, accepted["jobId"].as_str().unwrap()).await;
    let days = app.get("/metrics/business", key).await.expect(200).body;
    let today = &days.as_array().unwrap().last().expect("today's rollup");
    assert_eq!(today["day"], Utc::now().date_naive().to_string());
    assert_eq!(today["leadsCreated"], 3);
    assert_eq!(today["leadsBySource"]["web"], 2);
    assert_eq!(today["leadsByStatus"]["CONVERTED"], 1);
    assert!((today["conversionRate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(
        today["activities"].as_u64().unwrap() >= 6,
        "LEAD_CREATED and STATUS_CHANGED activities: {today}"
    );
    assert!(app
        .get("/metrics/business", &app.b.key)
        .await
        .expect(200)
        .body
        .as_array()
        .unwrap()
        .is_empty());
    app.get("/metrics/business?from=2026-13-01", key)
        .await
        .expect_error(400, "invalid_day");
    app.get("/metrics/business?from=2026-11-10&to=2026-11-01", key)
        .await
        .expect_error(400, "invalid_range");
}

#[tokio::test]
async fn a_lead_that_asks_for_it_is_announced_to_the_voice_agent() {
    let app = spawn_app_with(|c| c.worker_poll_ms = 20).await;
    let key = &app.a.key;
    app.post(
        "/leads",
        key,
        json!({"firstName": "Mette", "lastName": "Lund", "voiceNotificationEnabled": true}),
    )
    .await
    .expect(201);
    app.post("/leads", key, json!({"firstName": "Quiet"}))
        .await
        .expect(201);
    let mut notification = None;
    for _ in 0..200 {
        let log = app
            .get("/events/log?limit=1000", key)
            .await
            .expect(200)
            .body;
        notification = log["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"]["type"] == "VOICE_NOTIFICATION")
            .cloned();
        if notification.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let notification = notification.expect("a VOICE_NOTIFICATION event");
    assert_eq!(
        notification["event"]["data"]["message"],
        "New lead received: Mette Lund"
    );
    assert_eq!(notification["event"]["target"], json!(["voice-agent"]));
    let log = app
        .get("/events/log?limit=1000", key)
        .await
        .expect(200)
        .body;
    let count = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "VOICE_NOTIFICATION")
        .count();
    assert_eq!(count, 1, "only the lead that asked");
}
