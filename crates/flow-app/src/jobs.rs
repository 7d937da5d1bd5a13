//! The job kinds Flow's use cases enqueue, and enqueueing on a caller's behalf.

use flow_jobs::{Enqueue, Queue, WorkSignal};
use flow_store::{AuditAction, Job, JobId, Store, TenantId};

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    work::{Record, Work},
};

flow_store::string_enum! {
    /// Every kind of job Flow's processors run (besides the engine's own `ping`).
    #[derive(Hash)]
    pub enum JobKind {
        /// A tenant's daily business rollup (analytics-processing).
        Rollup = "rollup",
        /// A tenant export (backup-operations).
        Export = "export",
        /// A question for the chat API (voice-processing).
        Chat = "chat",
        /// The auditor's compliance scan (compliance-checks).
        Scan = "scan",
        /// Inbox AI headers to contacts and activities (email-sync).
        SyncHeaders = "sync_headers",
        /// Follow-ups of a qualified lead (lead-processing).
        LeadQualified = "lead_qualified",
        /// Follow-ups of a converted lead (lead-processing).
        LeadConverted = "lead_converted",
        /// A CSV or NDJSON lead import (lead-processing).
        ImportLeads = "import_leads",
        /// A voice notification for the voice agent (voice-processing).
        Notify = "notify",
        /// An uploaded voice command: transcribe, then run (voice-processing).
        VoiceAudio = "voice.audio",
    }
}

impl JobKind {
    /// The queue jobs of this kind run in.
    pub const fn queue(self) -> Queue {
        match self {
            JobKind::Rollup => Queue::AnalyticsProcessing,
            JobKind::Export => Queue::BackupOperations,
            JobKind::Chat | JobKind::Notify | JobKind::VoiceAudio => Queue::VoiceProcessing,
            JobKind::Scan => Queue::ComplianceChecks,
            JobKind::SyncHeaders => Queue::EmailSync,
            JobKind::LeadQualified | JobKind::LeadConverted | JobKind::ImportLeads => {
                Queue::LeadProcessing
            }
        }
    }

    /// Whether an admin may enqueue it over `/admin/queues/{queue}/jobs`: only kinds
    /// whose payload says what to do, never on whose behalf or with which rights. The
    /// others are enqueued by Flow's own use cases, for the caller that asked.
    pub const fn admin_may_enqueue(self) -> bool {
        matches!(self, JobKind::Rollup | JobKind::Export | JobKind::Scan)
    }

    /// A job of this kind in its queue, due now.
    pub fn job(self, payload: serde_json::Value) -> Enqueue {
        Enqueue::new(self.queue(), self.as_str(), payload)
    }
}

/// The caller a job acts for, or the permanent failure of a job that names none.
pub fn owner_of(job: &Job) -> Result<Caller, flow_jobs::JobError> {
    Caller::of_job(job).ok_or_else(|| {
        flow_jobs::JobError::Permanent(format!(
            "{} job acts for nobody: it was not enqueued for a caller",
            job.kind
        ))
    })
}

/// Whether the admin enqueue route takes `kind` jobs into `queue`: the engine's `ping`
/// anywhere, and the kinds [`JobKind::admin_may_enqueue`] allows in their own queue.
pub fn admin_may_enqueue(queue: Queue, kind: &str) -> bool {
    kind == flow_jobs::PING
        || JobKind::parse(kind)
            .is_some_and(|kind| kind.admin_may_enqueue() && kind.queue() == queue)
}

/// Enqueues one job for the caller in its own transaction, with an audit entry naming
/// `action`, and wakes the workers. The caller is kept as the job's owner.
pub async fn start(
    store: &dyn Store,
    signal: &WorkSignal,
    caller: &Caller,
    mut request: Enqueue,
    action: AuditAction,
) -> ApiResult<Job> {
    // The job acts for the caller that asked, whatever its payload says.
    request.owner = Some(caller.job_owner());
    let mut work = Work::begin(store, caller).await?;
    let (job, created) = flow_jobs::enqueue_in(work.tx(), request).await?;
    if created {
        work.record(Record {
            action,
            entity_type: "job",
            entity_id: job.id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "queue": job.queue, "kind": job.kind })),
            event: None,
        })
        .await?;
    }
    work.commit().await?;
    signal.notify();
    Ok(job)
}

/// One of a tenant's jobs; another tenant's is not found.
pub async fn get_job(store: &dyn Store, tenant: TenantId, id: JobId) -> ApiResult<Job> {
    let mut tx = store.read(tenant).await?;
    tx.get_job(id)
        .await
        .map_err(|e| ApiError::from_store("job", e))
}
