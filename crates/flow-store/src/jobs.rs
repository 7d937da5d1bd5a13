//! Durable jobs: what a queue holds and how a worker takes and settles them.

use std::{cmp::Ordering, collections::BTreeMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{JobId, LeadStatus, TenantId};

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
    /// Who asked for the job and with which rights, for kinds that act for someone.
    /// Stored beside the payload, which says only what to do.
    #[serde(skip)]
    pub owner: Option<JobOwner>,
    pub errors: Vec<AttemptError>,
    pub progress: Option<Value>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Claim order: highest queue priority, then highest job priority, longest due, oldest.
    pub fn claim_order(&self, other: &Job) -> Ordering {
        other
            .queue_priority
            .cmp(&self.queue_priority)
            .then(other.priority.cmp(&self.priority))
            .then(self.run_at.cmp(&other.run_at))
            .then(self.id.cmp(&other.id))
    }
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
    /// Set from the authenticated caller when the job acts for it.
    pub owner: Option<JobOwner>,
}

/// The caller a job acts for: taken from its credential when the job was enqueued, never
/// from the job's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOwner {
    pub actor: crate::Actor,
    pub permissions: Vec<String>,
    pub source_app: String,
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

impl ClaimRequest {
    /// Asks for nothing: no queues, or no room for a job.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() || self.limit == 0
    }
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

impl Settlement {
    /// The state the job is left in.
    pub fn state(&self) -> JobState {
        match self {
            Settlement::Completed { .. } => JobState::Completed,
            Settlement::Retry { .. } => JobState::Ready,
            Settlement::Dead { .. } => JobState::Dead,
        }
    }

    /// What a completed job produced.
    pub fn result(&self) -> Option<&Value> {
        match self {
            Settlement::Completed { result } => Some(result),
            _ => None,
        }
    }

    /// When a retried job is due again.
    pub fn run_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Settlement::Retry { run_at, .. } => Some(*run_at),
            _ => None,
        }
    }

    /// The failed attempt's error, appended to the job's `errors`.
    pub fn error(&self) -> Option<&AttemptError> {
        match self {
            Settlement::Retry { error, .. } | Settlement::Dead { error } => Some(error),
            Settlement::Completed { .. } => None,
        }
    }
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

impl QueueCounts {
    /// Where `completed_last_minute` starts for counts taken at `now`.
    pub fn last_minute_start(now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::minutes(1)
    }
}

/// One tenant's activity on one day, rolled up by the analytics queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollup {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub leads_created: u64,
    /// Leads created that day, by their current status.
    pub leads_by_status: BTreeMap<String, u64>,
    pub leads_by_source: BTreeMap<String, u64>,
    /// Converted / created, for the leads created that day.
    pub conversion_rate: f64,
    pub activities: u64,
    pub voice_commands: u64,
    pub deals_won: u64,
    pub computed_at: Option<DateTime<Utc>>,
}

impl DailyRollup {
    /// The audit action counted as one voice command (what `POST /voice/execute` records).
    pub const VOICE_COMMAND_ACTION: &'static str = crate::AuditAction::VoiceExecute.as_str();

    /// The rollup of `day` from what a backend counted, computed now.
    pub fn from_counts(day: &str, counts: RollupCounts) -> Self {
        // Every lead created that day has exactly one status, so the groups add up to all.
        let leads_created: u64 = counts.leads_by_status.values().sum();
        let converted = counts
            .leads_by_status
            .get(LeadStatus::Converted.as_str())
            .copied()
            .unwrap_or(0);
        Self {
            day: day.to_owned(),
            leads_created,
            conversion_rate: if leads_created == 0 {
                0.0
            } else {
                converted as f64 / leads_created as f64
            },
            leads_by_status: counts.leads_by_status,
            leads_by_source: counts.leads_by_source,
            activities: counts.activities,
            voice_commands: counts.voice_commands,
            deals_won: counts.deals_won,
            computed_at: Some(crate::now()),
        }
    }
}

/// What a backend counts for one tenant's day; [`DailyRollup::from_counts`] derives the rest.
#[derive(Clone, Debug, Default)]
pub struct RollupCounts {
    /// Leads created that day, by their current status name.
    pub leads_by_status: BTreeMap<String, u64>,
    /// Leads created that day, by source.
    pub leads_by_source: BTreeMap<String, u64>,
    /// Activities created that day.
    pub activities: u64,
    /// Audit entries of that day with [`DailyRollup::VOICE_COMMAND_ACTION`].
    pub voice_commands: u64,
    /// Deals closed as won that day.
    pub deals_won: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn counts(by_status: &[(&str, u64)]) -> RollupCounts {
        RollupCounts {
            leads_by_status: by_status.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            leads_by_source: [("web".to_string(), 3)].into(),
            activities: 5,
            voice_commands: 2,
            deals_won: 1,
        }
    }

    #[test]
    fn rollup_counts_created_leads_and_the_converted_share() {
        let rollup = DailyRollup::from_counts(
            "2024-05-01",
            counts(&[("NEW", 1), ("CONVERTED", 1), ("LOST", 2)]),
        );
        assert_eq!(rollup.day, "2024-05-01");
        assert_eq!(rollup.leads_created, 4);
        assert_eq!(rollup.conversion_rate, 0.25);
        assert_eq!(rollup.leads_by_status["LOST"], 2);
        assert_eq!(rollup.leads_by_source["web"], 3);
        assert_eq!(
            (rollup.activities, rollup.voice_commands, rollup.deals_won),
            (5, 2, 1)
        );
        assert!(rollup.computed_at.is_some());
    }

    #[test]
    fn rollup_of_a_day_without_leads_converts_nothing() {
        let rollup = DailyRollup::from_counts("2024-05-02", counts(&[]));
        assert_eq!(rollup.leads_created, 0);
        assert_eq!(rollup.conversion_rate, 0.0);
        let none_converted = DailyRollup::from_counts("2024-05-03", counts(&[("NEW", 3)]));
        assert_eq!(none_converted.conversion_rate, 0.0);
        let all_converted = DailyRollup::from_counts("2024-05-04", counts(&[("CONVERTED", 3)]));
        assert_eq!(all_converted.conversion_rate, 1.0);
    }

    fn job(queue_priority: i32, priority: i32, run_at: i64) -> Job {
        let at = DateTime::from_timestamp(run_at, 0).unwrap();
        Job {
            id: JobId::new(),
            tenant_id: TenantId::new(),
            queue: "q".into(),
            kind: "k".into(),
            payload: json!({}),
            priority,
            queue_priority,
            state: JobState::Running,
            attempts: 1,
            max_attempts: 3,
            run_at: at,
            lease_until: None,
            idempotency_key: None,
            owner: None,
            errors: Vec::new(),
            progress: None,
            result: None,
            created_at: at,
            updated_at: at,
            finished_at: None,
        }
    }

    #[test]
    fn claimed_jobs_go_by_queue_priority_then_priority_then_age() {
        let older_twin = Job {
            id: JobId(uuid::Uuid::from_u128(1)),
            ..job(2, 0, 100)
        };
        let younger_twin = Job {
            id: JobId(uuid::Uuid::from_u128(2)),
            ..job(2, 0, 100)
        };
        let jobs = [
            job(1, 9, 0),
            job(2, 0, 200),
            younger_twin.clone(),
            job(3, 0, 500),
            job(2, 5, 300),
            older_twin.clone(),
        ];
        let mut sorted = jobs.to_vec();
        sorted.sort_by(Job::claim_order);
        let order: Vec<_> = sorted
            .iter()
            .map(|j| (j.queue_priority, j.priority, j.run_at.timestamp()))
            .collect();
        assert_eq!(
            order,
            [
                (3, 0, 500),
                (2, 5, 300),
                (2, 0, 100),
                (2, 0, 100),
                (2, 0, 200),
                (1, 9, 0)
            ]
        );
        // Same priorities and due time: the smaller (older) id goes first.
        assert_eq!(sorted[2].id, older_twin.id);
        assert_eq!(sorted[3].id, younger_twin.id);
    }

    #[test]
    fn settlements_name_the_state_they_leave() {
        let error = AttemptError {
            attempt: 2,
            at: DateTime::from_timestamp(10, 0).unwrap(),
            message: "timeout".into(),
        };
        let run_at = DateTime::from_timestamp(20, 0).unwrap();
        let done = Settlement::Completed { result: json!(1) };
        let retry = Settlement::Retry {
            error: error.clone(),
            run_at,
        };
        let dead = Settlement::Dead {
            error: error.clone(),
        };
        assert_eq!(
            [done.state(), retry.state(), dead.state()],
            [JobState::Completed, JobState::Ready, JobState::Dead]
        );
        assert_eq!(done.result(), Some(&json!(1)));
        assert_eq!((retry.result(), dead.result()), (None, None));
        assert_eq!(
            [done.run_at(), retry.run_at(), dead.run_at()],
            [None, Some(run_at), None]
        );
        assert_eq!(
            [done.error(), retry.error(), dead.error()],
            [None, Some(&error), Some(&error)]
        );
    }

    #[test]
    fn claim_requests_without_queues_or_room_ask_for_nothing() {
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let request = |queues: &[&str], limit| ClaimRequest {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            now: at,
            lease_until: at,
            limit,
        };
        assert!(request(&[], 5).is_empty());
        assert!(request(&["a"], 0).is_empty());
        assert!(!request(&["a"], 1).is_empty());
    }
}
