//! `/jobs/{id}`, `/leads/import` and the queue admin routes.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, StatusCode},
    Json,
};
use chrono::Utc;
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
use flow_app::processors::{self, import};
use flow_app::services::{read, Record, Work};
use flow_jobs::Queue;

/// The job routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_job))
        .routes(routes!(import_leads))
        .routes(routes!(queues))
        .routes(routes!(enqueue_jobs))
        .routes(routes!(queue_jobs))
        .routes(routes!(retry_job))
        .routes(routes!(delete_job))
        .routes(routes!(start_compliance_check))
        .routes(routes!(get_compliance_check))
        .routes(routes!(email_sync))
        .routes(routes!(start_backup))
        .routes(routes!(business_metrics))
        .routes(routes!(start_rollup))
        .routes(routes!(chat))
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

/// An uploaded import file and its format, from `Content-Type`.
struct ImportFile {
    format: import::ImportFormat,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for ImportFile {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let format = match content_type.as_str() {
            "text/csv" => import::ImportFormat::Csv,
            "application/x-ndjson" => import::ImportFormat::Ndjson,
            _ => {
                return Err(HttpError::new(ErrorCode::UnsupportedMediaType, "send text/csv (header firstName,lastName,email,phone,company,source) or application/x-ndjson",
                ))
            }
        };
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::new(ErrorCode::PayloadTooLarge, "the file is too large")
            } else {
                HttpError::new(ErrorCode::InvalidBody, e.body_text())
            }
        })?;
        Ok(Self { format, body })
    }
}

impl Accepted {
    /// 202 with the job and where to follow it.
    fn response(job: &Job, status_url: String) -> (StatusCode, Json<Self>) {
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

/// Import leads from CSV (`text/csv`, header `firstName,lastName,email,phone,company,source`)
/// or NDJSON (`application/x-ndjson`). Answers 202 with a job; rows are created in batches,
/// with progress and per-row errors in `GET /jobs/{id}`. The same file again is the same job,
/// and rows whose email already has a lead are skipped.
#[utoipa::path(post, path = "/leads/import", tag = "leads",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn import_leads(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    file: ImportFile,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = import::start(
        &*state.store,
        &state.work_signal,
        &caller,
        file.format,
        &file.body,
    )
    .await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
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

/// Start a compliance check of this tenant (keys unused for 90 days, contacts without
/// consent or source, open leads untouched for 30 days). Answers 202; the report is the
/// job's result, also at `GET /compliance/checks/{id}`.
#[utoipa::path(post, path = "/compliance/checks", tag = "security",
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_compliance_check(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = processors::compliance::start(&*state.store, &state.work_signal, &caller).await?;
    Ok(Accepted::response(
        &job,
        format!("/compliance/checks/{}", job.id),
    ))
}

/// A compliance check: its state and, once done, its report.
#[utoipa::path(get, path = "/compliance/checks/{id}", tag = "security", params(("id" = JobId, Path)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
async fn get_compliance_check(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<JobId>,
) -> HttpResult<Json<Job>> {
    caller.require("read", "compliance")?;
    let job = read(&*state.store, &caller)
        .await?
        .get_job(id)
        .await
        .map_err(|e| flow_app::ApiError::from_store("compliance check", e))?;
    if job.queue != "compliance-checks" {
        return Err(HttpError::not_found("compliance check"));
    }
    Ok(Json(job))
}

/// Sync a batch of email headers (the Inbox AI's call): senders become contacts (upserted by
/// address) and each email an EMAIL activity. Answers 202 with the job.
#[utoipa::path(post, path = "/contacts/email-sync", tag = "contacts", request_body = processors::email_sync::EmailSyncRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn email_sync(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(request): crate::extract::ApiJson<
        processors::email_sync::EmailSyncRequest,
    >,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job =
        processors::email_sync::start(&*state.store, &state.work_signal, &caller, request).await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}

/// Back up this tenant: a consistent JSON-lines export with a SHA-256 checksum file,
/// written under the data dir by the backup-operations queue; BACKUP_COMPLETED follows.
/// `flow restore` loads such a file into an empty tenant.
#[utoipa::path(post, path = "/admin/backups", tag = "admin",
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_backup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = processors::backup::start(&*state.store, &state.work_signal, &caller).await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
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

/// Query of `GET /metrics/business`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BusinessQuery {
    /// First day, `YYYY-MM-DD` (default: six days before `to`).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    pub to: Option<String>,
}

/// Daily business numbers (leads by status and source, conversion rate, activities, voice
/// commands, deals won) as rolled up by the analytics queue (hourly, and on demand).
#[utoipa::path(get, path = "/metrics/business", tag = "analytics", params(BusinessQuery),
    responses((status = 200, body = Vec<flow_store::DailyRollup>), (status = "4XX", body = ErrorBody)))]
async fn business_metrics(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<BusinessQuery>,
) -> HttpResult<Json<Vec<flow_store::DailyRollup>>> {
    if !caller.permissions.allows("read", "analytics") {
        caller.require("read", "metrics")?;
    }
    let to = match &query.to {
        Some(day) => processors::analytics::parse_day(day)?,
        None => Utc::now().date_naive(),
    };
    let from = match &query.from {
        Some(day) => processors::analytics::parse_day(day)?,
        None => to - chrono::Duration::days(6),
    };
    if from > to || (to - from).num_days() > 366 {
        return Err(HttpError::new(
            ErrorCode::InvalidRange,
            "from must be before to, at most a year apart",
        ));
    }
    let rollups = read(&*state.store, &caller)
        .await?
        .list_rollups(&from.to_string(), &to.to_string())
        .await?;
    Ok(Json(rollups))
}

/// Body of the rollup trigger.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollupRequest {
    /// The day to roll up, `YYYY-MM-DD` (default: today, UTC).
    pub day: Option<String>,
}

/// Roll up a day now instead of waiting for the hourly run. Answers 202 with the job.
#[utoipa::path(post, path = "/metrics/business/rollup", tag = "analytics", request_body = RollupRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_rollup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(body): crate::extract::ApiJson<RollupRequest>,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    caller.require("write", "analytics")?;
    let day = match &body.day {
        Some(day) => processors::analytics::parse_day(day)?,
        None => Utc::now().date_naive(),
    };
    let job = processors::analytics::enqueue(&*state.store, caller.tenant_id, day).await?;
    state.work_signal.notify();
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}

/// Ask Flow's assistant (an OpenAI-compatible chat API). Answers 202 with a job; the reply
/// becomes the job's result and is pushed to the tenant's apps as JOB_COMPLETED.
#[utoipa::path(post, path = "/chat", tag = "jobs", request_body = processors::chat::ChatRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn chat(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(request): crate::extract::ApiJson<processors::chat::ChatRequest>,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let configured = state.config.llm_base_url.is_some();
    let job = processors::chat::start(
        &*state.store,
        &state.work_signal,
        configured,
        &caller,
        request,
    )
    .await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
