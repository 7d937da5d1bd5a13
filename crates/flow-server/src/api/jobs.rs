//! `/jobs/{id}` and the queue admin routes, and the 202 answer of every route that
//! starts a job.

use axum::{extract::State, http::StatusCode, Json};
use chrono::Utc;
use flow_app::{
    jobs::JobKind,
    services::{read, Record, Work},
};
use flow_jobs::Queue;
use flow_store::{AuditAction, Job, JobId, JobState, QueueCounts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::{ApiPath, ApiQuery},
    state::AppState,
};

/// The job routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_job))
        .routes(routes!(queues))
        .routes(routes!(enqueue_jobs))
        .routes(routes!(queue_jobs))
        .routes(routes!(retry_job))
        .routes(routes!(delete_job))
}

/// Get a job: state, attempts, errors, progress and result.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = JobId, Path)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
async fn get_job(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<JobId>,
) -> HttpResult<Json<Job>> {
    caller.require("read", "jobs")?;
    let mut tx = read(&*state.store, &caller).await?;
    Ok(Json(
        tx.get_job(id)
            .await
            .map_err(|e| flow_app::ApiError::from_store("job", e))?,
    ))
}

impl Accepted {
    /// 202 with the job and where to follow it.
    pub(super) fn response(job: &Job, status_url: String) -> (StatusCode, Json<Self>) {
        (
            StatusCode::ACCEPTED,
            Json(Self {
                job_id: job.id,
                state: job.state,
                status_url,
            }),
        )
    }
}

/// Accepted import.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub job_id: JobId,
    pub state: JobState,
    /// Where to follow progress.
    pub status_url: String,
}

/// Per-queue counts of this tenant's jobs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueOverview {
    pub name: String,
    pub priority: i32,
    pub max_retries: u32,
    #[serde(flatten)]
    pub counts: QueueCounts,
}

/// The spec's queues with this tenant's ready, delayed, running, completed and dead jobs,
/// recent throughput and the age of the oldest waiting job.
#[utoipa::path(get, path = "/admin/queues", tag = "admin",
    responses((status = 200, body = Vec<QueueOverview>), (status = "4XX", body = ErrorBody)))]
async fn queues(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<Vec<QueueOverview>>> {
    caller.require("admin", "queues")?;
    let counts = read(&*state.store, &caller)
        .await?
        .queue_counts(Utc::now())
        .await?;
    Ok(Json(
        Queue::ALL
            .iter()
            .map(|queue| QueueOverview {
                name: queue.as_str().to_owned(),
                priority: queue.priority(),
                max_retries: queue.max_retries(),
                counts: counts
                    .iter()
                    .find(|c| c.queue == queue.as_str())
                    .cloned()
                    .unwrap_or_else(|| QueueCounts {
                        queue: queue.as_str().to_owned(),
                        ..QueueCounts::default()
                    }),
            })
            .collect(),
    ))
}

/// One of the spec's queues by name; any other name is not found.
fn named_queue(name: &str) -> HttpResult<Queue> {
    Queue::parse(name).ok_or_else(|| HttpError::not_found(&format!("queue {name:?}")))
}

/// Query of the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    pub state: Option<JobState>,
    /// 1-100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// This tenant's jobs in a queue, newest first, optionally in one state (`dead` for the DLQ).
#[utoipa::path(get, path = "/admin/queues/{name}/jobs", tag = "admin", params(("name" = String, Path), JobsQuery),
    responses((status = 200, body = Vec<Job>), (status = "4XX", body = ErrorBody)))]
async fn queue_jobs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<JobsQuery>,
) -> HttpResult<Json<Vec<Job>>> {
    caller.require("admin", "queues")?;
    let queue = named_queue(&name)?;
    let limit = flow_app::validate::limit(query.limit)?;
    Ok(Json(
        read(&*state.store, &caller)
            .await?
            .list_jobs(queue.as_str(), query.state, limit)
            .await?,
    ))
}

/// Move a dead job back to ready with a fresh set of attempts.
#[utoipa::path(post, path = "/admin/queues/{name}/jobs/{id}/retry", tag = "admin",
    params(("name" = String, Path), ("id" = JobId, Path)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
async fn retry_job(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((name, id)): ApiPath<(String, JobId)>,
) -> HttpResult<Json<Job>> {
    caller.require("admin", "queues")?;
    let queue = named_queue(&name)?;
    let mut work = Work::begin(&*state.store, &caller).await?;
    let job = dead_job(&mut work, queue.as_str(), id).await?;
    let job = work.tx().requeue_job(job.id, Utc::now()).await?;
    work.record(Record {
        action: AuditAction::JobRequeue,
        entity_type: "job",
        entity_id: id.to_string(),
        before: Some(serde_json::json!({ "state": "dead" })),
        after: Some(serde_json::json!({ "state": "ready" })),
        event: None,
    })
    .await?;
    work.commit().await?;
    state.work_signal.notify();
    Ok(Json(job))
}

/// Delete a dead job from the dead-letter queue.
#[utoipa::path(delete, path = "/admin/queues/{name}/jobs/{id}", tag = "admin",
    params(("name" = String, Path), ("id" = JobId, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_job(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((name, id)): ApiPath<(String, JobId)>,
) -> HttpResult<StatusCode> {
    caller.require("admin", "queues")?;
    let queue = named_queue(&name)?;
    let mut work = Work::begin(&*state.store, &caller).await?;
    dead_job(&mut work, queue.as_str(), id).await?;
    work.tx().delete_dead_job(id).await?;
    work.record(Record {
        action: AuditAction::JobDelete,
        entity_type: "job",
        entity_id: id.to_string(),
        before: Some(serde_json::json!({ "state": "dead" })),
        after: None,
        event: None,
    })
    .await?;
    work.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The job, if it is in `queue` and dead; 404 when missing, 409 when not dead.
async fn dead_job(work: &mut Work<'_>, queue: &str, id: JobId) -> HttpResult<Job> {
    let job = work
        .tx()
        .get_job(id)
        .await
        .map_err(|e| flow_app::ApiError::from_store("job", e))?;
    if job.queue != queue {
        return Err(HttpError::not_found("job"));
    }
    if job.state != JobState::Dead {
        return Err(HttpError::new(
            ErrorCode::JobNotDead,
            format!("the job is {}, not dead", job.state.as_str()),
        ));
    }
    Ok(job)
}

/// One job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnqueueJob {
    /// A kind the queue's workers know (every queue knows `ping`).
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Higher runs first within the queue (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Run no earlier than this many milliseconds from now.
    #[serde(default)]
    pub delay_ms: u64,
    /// Defaults to the queue's retries + 1.
    pub max_attempts: Option<u32>,
    /// A second enqueue with the same key returns the first job.
    pub idempotency_key: Option<String>,
}

/// Body of the enqueue route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueJobs {
    /// 1 to 1,000 jobs, enqueued in one transaction.
    pub jobs: Vec<EnqueueJob>,
}

/// Enqueue jobs into one of the spec's queues (admin). Answers 202 with the jobs, in order;
/// a job whose idempotency key was seen before is the earlier job.
#[utoipa::path(post, path = "/admin/queues/{name}/jobs", tag = "admin", params(("name" = String, Path)),
    request_body = EnqueueJobs,
    responses((status = 202, body = Vec<Job>), (status = "4XX", body = ErrorBody)))]
async fn enqueue_jobs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    crate::extract::ApiJson(body): crate::extract::ApiJson<EnqueueJobs>,
) -> HttpResult<(StatusCode, Json<Vec<Job>>)> {
    caller.require("admin", "queues")?;
    let queue = named_queue(&name)?;
    if body.jobs.is_empty() || body.jobs.len() > 1000 {
        return Err(HttpError::validation("send 1 to 1000 jobs"));
    }
    let now = Utc::now();
    let mut requests = Vec::with_capacity(body.jobs.len());
    for job in body.jobs {
        let kind = flow_app::validate::slug("kind", &job.kind)?;
        if !flow_app::jobs::admin_may_enqueue(queue, &kind) {
            // Internal kinds act for the user who asked for them; enqueued here they
            // would act for whoever the payload names.
            let accepted: Vec<&str> = std::iter::once(flow_jobs::PING)
                .chain(
                    JobKind::ALL
                        .iter()
                        .filter(|k| k.admin_may_enqueue() && k.queue() == queue)
                        .map(|k| k.as_str()),
                )
                .collect();
            return Err(HttpError::validation(format!(
                "{kind:?} jobs cannot be enqueued here; {} takes {}",
                queue.as_str(),
                accepted.join(", ")
            )));
        }
        if job.delay_ms > 30 * 24 * 3600 * 1000 {
            return Err(HttpError::validation("delayMs is at most 30 days"));
        }
        if job.max_attempts.is_some_and(|n| n == 0 || n > 100) {
            return Err(HttpError::validation("maxAttempts must be 1-100"));
        }
        let mut request = flow_jobs::Enqueue::new(queue, &kind, job.payload);
        request.priority = job.priority;
        request.run_at = now + chrono::Duration::milliseconds(job.delay_ms as i64);
        request.max_attempts = job.max_attempts;
        request.idempotency_key = job
            .idempotency_key
            .map(|k| flow_app::validate::name("idempotencyKey", &k, 200))
            .transpose()?;
        requests.push(request);
    }
    let mut work = Work::begin(&*state.store, &caller).await?;
    let jobs = flow_jobs::enqueue_many_in(work.tx(), requests)
        .await?
        .into_iter()
        .map(|(job, _)| job)
        .collect();
    work.commit().await?;
    state.work_signal.notify();
    Ok((StatusCode::ACCEPTED, Json(jobs)))
}
