//! Bulk lead import: a CSV or NDJSON file becomes a lead-processing job that creates the
//! leads in batches, reporting progress and per-row errors.

use std::sync::Arc;

use async_trait::async_trait;
use flow_store::{AuditAction, EventType, LeadFilter, NewEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    services::leads::{self, CreateLead},
    services::Work,
};
use flow_jobs::{JobError, Processor};

/// The job kind in the lead-processing queue.
pub const KIND: &str = crate::jobs::JobKind::ImportLeads.as_str();

/// Rows per transaction where all tenants' writes share one writer (the embedded
/// backend): short enough that another tenant's write waits milliseconds behind one.
const SHARED_WRITER_BATCH: usize = 10;

/// Rows per transaction where writers run in parallel (PostgreSQL): fewer commits.
const BATCH: usize = 100;

/// Rows per progress event (the stored progress follows every transaction).
const PROGRESS_EVERY: usize = 100;

/// Per-row errors kept in the result (the counts cover all of them).
const MAX_REPORTED_ERRORS: usize = 100;

/// One row of an import file; the CSV header is `firstName,lastName,email,phone,company,source`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportRow {
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
}

/// The file formats `POST /leads/import` takes.
#[derive(Clone, Copy, Debug)]
pub enum ImportFormat {
    Csv,
    Ndjson,
}

/// Parses an import file into rows; a row that cannot be read becomes an error row
/// (reported by the job), a file that cannot be read at all is a 4xx.
pub fn parse(format: ImportFormat, body: &[u8]) -> ApiResult<Vec<Result<ImportRow, String>>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidEncoding, "the file must be UTF-8"))?;
    let rows: Vec<Result<ImportRow, String>> = match format {
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| ApiError::validation(format!("unreadable CSV header: {e}")))?
                .clone();
            let allowed = [
                "firstName",
                "lastName",
                "email",
                "phone",
                "company",
                "source",
            ];
            if let Some(unknown) = headers.iter().find(|h| !allowed.contains(h)) {
                return Err(ApiError::validation(format!(
                    "unknown CSV column {unknown:?}; expected a header row of {}",
                    allowed.join(",")
                )));
            }
            if !headers.iter().any(|h| h == "firstName") {
                return Err(ApiError::validation(
                    "the CSV header needs a firstName column",
                ));
            }
            reader
                .deserialize::<ImportRow>()
                .map(|row| row.map_err(|e| e.to_string()))
                .collect()
        }
        ImportFormat::Ndjson => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<ImportRow>(line).map_err(|e| e.to_string()))
            .collect(),
    };
    if rows.is_empty() {
        return Err(ApiError::validation("the file has no rows"));
    }
    Ok(rows)
}

/// The payload of an import job.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportPayload {
    pub rows: Vec<Value>,
    pub request_id: Option<String>,
}

impl ImportPayload {
    /// The payload for rows parsed from a file; unreadable rows travel as their error.
    pub fn new(rows: Vec<Result<ImportRow, String>>, caller: &Caller) -> Self {
        Self {
            rows: rows
                .into_iter()
                .map(|row| match row {
                    Ok(row) => json!({ "row": row }),
                    Err(error) => json!({ "error": error }),
                })
                .collect(),
            request_id: caller.request_id.clone(),
        }
    }
}

/// A stable key for a file's content: uploading the same file again is the same job.
pub fn idempotency_key(body: &[u8]) -> String {
    format!("import:{}", hex::encode(Sha256::digest(body)))
}

/// Progress and outcome of an import. Stored as the job's progress with each chunk, so
/// an attempt after a crash resumes where the committed chunks end, with their counts.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tally {
    total: usize,
    processed: usize,
    created: usize,
    duplicates: usize,
    failed: usize,
    errors: Vec<Value>,
}

/// Creates the leads of an import job. Rows whose email already belongs to a lead are
/// skipped, so running the job again (after a crash) creates no duplicates.
pub struct ImportLeads;

#[async_trait]
impl Processor for ImportLeads {
    async fn process(
        &self,
        store: &Arc<dyn Store>,
        job: &flow_store::Job,
    ) -> Result<Value, JobError> {
        let payload: ImportPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("bad import payload: {e}")))?;
        let caller = Caller {
            request_id: payload.request_id.clone(),
            ..crate::jobs::owner_of(job)?
        };
        // Rows of committed chunks were counted then: a row created by an earlier attempt
        // is not a duplicate of itself.
        let batch = if store.writes_share_one_writer() {
            SHARED_WRITER_BATCH
        } else {
            BATCH
        };
        let mut tally = job
            .progress
            .clone()
            .and_then(|progress| serde_json::from_value::<Tally>(progress).ok())
            .filter(|done| done.total == payload.rows.len() && done.processed <= done.total)
            .unwrap_or(Tally {
                total: payload.rows.len(),
                ..Tally::default()
            });
        // One transaction per chunk: its rows, the progress and the progress event commit
        // together, so a crash loses at most the chunk under way and the retry's email
        // check skips what was committed. Each commit is also where the import yields: on
        // SQLite the writer is a first-come, first-served lock, and a chunk ends early as
        // soon as another write queues for it, so that write waits for one row, not ten;
        // the import then rests (below). A row's hold is bounded whatever the tenant's
        // size, because every lookup in it is indexed (the storage crates' query-plan
        // tests keep it so).
        while tally.processed < tally.total {
            let chunk_started = std::time::Instant::now();
            let processed_before = tally.processed;
            let chunk_end = (tally.processed + batch).min(tally.total);
            let mut work = Work::begin(&**store, &caller)
                .await
                .map_err(|e| JobError::Retryable(e.message))?;
            while tally.processed < chunk_end {
                // Row numbers as a person counts them in the file (1 = the first data row).
                let row_number = tally.processed + 1;
                match import_row(&mut work, &payload.rows[tally.processed]).await {
                    Ok(RowOutcome::Created) => tally.created += 1,
                    Ok(RowOutcome::Duplicate) => tally.duplicates += 1,
                    Err(RowError::Invalid(code, message)) => {
                        tally.failed += 1;
                        if tally.errors.len() < MAX_REPORTED_ERRORS {
                            tally.errors.push(
                                json!({ "row": row_number, "code": code, "message": message }),
                            );
                        }
                    }
                    Err(RowError::Retry(message)) => return Err(JobError::Retryable(message)),
                }
                tally.processed += 1;
                if work.tx().writer_wanted() {
                    break;
                }
            }
            let progress = json!({
                "total": tally.total, "processed": tally.processed, "created": tally.created,
                "duplicates": tally.duplicates, "failed": tally.failed,
            });
            let done = tally.processed == tally.total;
            // The stored progress keeps the row errors too, for a resumed attempt's result;
            // the event carries the counts only.
            let stored =
                serde_json::to_value(&tally).map_err(|e| JobError::Permanent(e.to_string()))?;
            // Fenced by the attempt: if this attempt's lease ran out and another worker took
            // the job, nothing of this chunk commits.
            work.tx()
                .set_job_progress(job.id, job.attempts, &stored)
                .await
                .map_err(|e| match e {
                    flow_store::StoreError::NotFound => {
                        JobError::Retryable("superseded by a later attempt".into())
                    }
                    other => other.into(),
                })?;
            // Progress reaches connected apps too, every PROGRESS_EVERY rows; the last event
            // says the import is done.
            let event_type = if done {
                Some(EventType::JobCompleted)
            } else {
                (tally.processed / PROGRESS_EVERY > processed_before / PROGRESS_EVERY)
                    .then_some(EventType::JobProgress)
            };
            if let Some(event_type) = event_type {
                let data = json!({ "jobId": job.id, "kind": KIND, "progress": progress });
                work.tx()
                    .append_event(&NewEvent::new(event_type, &caller.source_app, data))
                    .await?;
            }
            work.commit()
                .await
                .map_err(|e| JobError::Retryable(e.message))?;
            if store.writes_share_one_writer() && !done {
                // Bulk work holds the shared writer at most half the time: it rests as long
                // as its chunk took, and other tenants' writes get the writer meanwhile
                // instead of queueing behind chunk after chunk (their p99 tripled).
                tokio::time::sleep(chunk_started.elapsed()).await;
            }
        }
        serde_json::to_value(&tally).map_err(|e| JobError::Permanent(e.to_string()))
    }
}

enum RowOutcome {
    Created,
    Duplicate,
}

enum RowError {
    Invalid(String, String),
    Retry(String),
}

/// Checks one row and creates its lead within the chunk's transaction. A row that is
/// invalid changes nothing: it is refused before anything is written.
async fn import_row(work: &mut Work<'_>, entry: &Value) -> Result<RowOutcome, RowError> {
    if let Some(error) = entry.get("error").and_then(Value::as_str) {
        return Err(RowError::Invalid("unreadable_row".into(), error.to_owned()));
    }
    let row: ImportRow = serde_json::from_value(entry.get("row").cloned().unwrap_or_default())
        .map_err(|e| RowError::Invalid("unreadable_row".into(), e.to_string()))?;
    let as_row_error = |e: ApiError| {
        if e.code.is_server_side() {
            RowError::Retry(e.message)
        } else {
            RowError::Invalid(e.code.as_str().to_owned(), e.message)
        }
    };
    let input = CreateLead {
        first_name: row.first_name,
        last_name: row.last_name,
        email: row.email,
        phone: row.phone,
        company: row.company,
        source: row.source.or_else(|| Some("import".into())),
        notes: None,
        voice_notification_enabled: false,
    };
    let lead = leads::validated(work.caller(), input).map_err(as_row_error)?;
    if let Some(email) = &lead.email {
        // Reads this transaction's own writes: a repeat within the file is a duplicate too.
        let filter = LeadFilter {
            email: Some(email.clone()),
            limit: 1,
            ..LeadFilter::default()
        };
        let seen = work
            .tx()
            .list_leads(&filter)
            .await
            .map_err(|e| RowError::Retry(e.to_string()))?;
        if !seen.is_empty() {
            return Ok(RowOutcome::Duplicate);
        }
    }
    // A database error here spoils the transaction: the whole job is retried.
    leads::create_in(work, lead, false)
        .await
        .map_err(|e| RowError::Retry(e.message))?;
    Ok(RowOutcome::Created)
}

/// Accepts an import file: parses it, enqueues the job (the same file twice is the same
/// job) and wakes a worker.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    caller: &Caller,
    format: ImportFormat,
    body: &[u8],
) -> ApiResult<flow_store::Job> {
    caller.require("write", "leads")?;
    let rows = parse(format, body)?;
    let payload =
        serde_json::to_value(ImportPayload::new(rows, caller)).map_err(ApiError::internal)?;
    let mut request = crate::jobs::JobKind::ImportLeads.job(payload);
    request.idempotency_key = Some(idempotency_key(body));
    crate::jobs::start(store, signal, caller, request, AuditAction::LeadsImport).await
}
