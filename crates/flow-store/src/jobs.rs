//! Durable jobs: what a queue holds and how a worker takes and settles them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{JobId, TenantId};

crate::string_enum! {
    /// Where a job is in its life.
    #[derive(Hash, ToSchema)]
    pub enum JobState {
        /// Waiting to run (from `runAt` on: before that it counts as delayed).
        Ready = "ready",
        /// Taken by a worker that holds its lease.
        Running = "running",
        /// Done; `result` holds what it produced.
        Completed = "completed",
        /// Out of attempts, or failed for good: in the dead-letter queue until requeued.
        Dead = "dead",
    }
}

/// One failed attempt, kept with the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptError {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub message: String,
}

/// A job in a queue.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub queue: String,
    /// What to do, e.g. `import_leads`; the queue's processor dispatches on it.
    pub kind: String,
    pub payload: Value,
    /// Higher runs first within a queue.
    pub priority: i32,
    /// The queue's own priority (high 3, medium 2, low 1): orders work across queues.
    pub queue_priority: i32,
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub errors: Vec<AttemptError>,
    pub progress: Option<Value>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub queue: String,
    pub queue_priority: i32,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    pub max_attempts: u32,
    /// A second enqueue with the same key (per tenant and queue) returns the first job.
    pub idempotency_key: Option<String>,
}

/// How a worker asks for work.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Queues this worker serves.
    pub queues: Vec<String>,
    pub now: DateTime<Utc>,
    /// The lease runs until then; after it another worker may take the job again.
    pub lease_until: DateTime<Utc>,
    pub limit: u32,
}

/// How a finished attempt ends.
#[derive(Clone, Debug)]
pub enum Settlement {
    Completed {
        result: Value,
    },
    /// Back to ready at `run_at`, with the error recorded.
    Retry {
        error: AttemptError,
        run_at: DateTime<Utc>,
    },
    /// To the dead-letter queue, with the error recorded.
    Dead {
        error: AttemptError,
    },
}

/// Counts of one queue's jobs for one tenant.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    pub queue: String,
    pub ready: u64,
    pub delayed: u64,
    pub running: u64,
    pub completed: u64,
    pub dead: u64,
    /// Jobs finished in the last minute.
    pub completed_last_minute: u64,
    /// Age in seconds of the oldest job that is due and waiting.
    pub oldest_ready_age_seconds: Option<f64>,
}

/// One tenant's activity on one day, rolled up by the analytics queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollup {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub leads_created: u64,
    /// Leads created that day, by their current status.
    pub leads_by_status: std::collections::BTreeMap<String, u64>,
    pub leads_by_source: std::collections::BTreeMap<String, u64>,
    /// Converted / created, for the leads created that day.
    pub conversion_rate: f64,
    pub activities: u64,
    pub voice_commands: u64,
    pub deals_won: u64,
    pub computed_at: Option<DateTime<Utc>>,
}
