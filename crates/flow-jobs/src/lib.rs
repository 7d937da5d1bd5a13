//! Flow's durable job queues: the spec's queues, enqueueing inside a tenant transaction,
//! and the workers that claim, run and settle jobs (retries, leases, dead-letter queue).
//!
//! The engine names no processor: the application registers one per (queue, kind) in
//! [`Processors`].

mod metrics;
mod worker;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use flow_store::{Job, JobOwner, NewJob, StoreResult, TenantTx};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Notify;

pub use metrics::JobMetrics;
pub use worker::{ExecutionOutcome, JobError, Ping, Processor, Processors, Settler, Worker, PING};

flow_store::string_enum! {
    /// One of the spec's queues (001 "Message Queue System").
    #[derive(Hash, PartialOrd, Ord)]
    pub enum Queue {
        LeadProcessing = "lead-processing",
        EmailSync = "email-sync",
        VoiceProcessing = "voice-processing",
        BackupOperations = "backup-operations",
        ComplianceChecks = "compliance-checks",
        AnalyticsProcessing = "analytics-processing",
    }
}

impl Queue {
    /// Across queues, higher runs first (high 3, medium 2, low 1).
    pub const fn priority(self) -> i32 {
        match self {
            Queue::LeadProcessing | Queue::VoiceProcessing => 3,
            Queue::EmailSync | Queue::ComplianceChecks => 2,
            Queue::BackupOperations | Queue::AnalyticsProcessing => 1,
        }
    }

    /// Retries after the first attempt, as the spec counts them.
    pub const fn max_retries(self) -> u32 {
        match self {
            Queue::LeadProcessing | Queue::BackupOperations | Queue::ComplianceChecks => 3,
            Queue::EmailSync => 5,
            Queue::VoiceProcessing => 2,
            Queue::AnalyticsProcessing => 1,
        }
    }
}

/// What to enqueue.
#[derive(Clone, Debug)]
pub struct Enqueue {
    pub queue: Queue,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    /// Defaults to the queue's retries + 1.
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
    /// The caller the job acts for, from its credential (see [`JobOwner`]).
    pub owner: Option<JobOwner>,
}

impl Enqueue {
    /// A job due now with normal priority.
    pub fn new(queue: Queue, kind: &str, payload: Value) -> Self {
        Self {
            queue,
            kind: kind.to_owned(),
            payload,
            priority: 0,
            run_at: Utc::now(),
            max_attempts: None,
            idempotency_key: None,
            owner: None,
        }
    }
}

/// Enqueues inside the caller's transaction, so a job and the change that asks for it
/// commit together. Returns the job and whether it is new (not an idempotent repeat).
pub async fn enqueue_in(tx: &mut dyn TenantTx, request: Enqueue) -> StoreResult<(Job, bool)> {
    tx.enqueue_job(&new_job(request)).await
}

/// Like [`enqueue_in`] for many jobs at once (one statement where the backend can).
pub async fn enqueue_many_in(
    tx: &mut dyn TenantTx,
    requests: Vec<Enqueue>,
) -> StoreResult<Vec<(Job, bool)>> {
    let jobs: Vec<NewJob> = requests.into_iter().map(new_job).collect();
    tx.enqueue_jobs(&jobs).await
}

fn new_job(request: Enqueue) -> NewJob {
    let queue = request.queue;
    NewJob {
        queue: queue.as_str().to_owned(),
        queue_priority: queue.priority(),
        kind: request.kind,
        payload: request.payload,
        priority: request.priority,
        run_at: request.run_at,
        max_attempts: request
            .max_attempts
            .unwrap_or(queue.max_retries() + 1)
            .max(1),
        idempotency_key: request.idempotency_key,
        owner: request.owner,
    }
}

/// Wakes idle workers when work arrives (they also poll, for work enqueued elsewhere).
#[derive(Clone, Default)]
pub struct WorkSignal(Arc<Notify>);

impl WorkSignal {
    /// Tells the idle workers there is work.
    pub fn notify(&self) {
        self.0.notify_waiters();
        // A worker between an empty claim and its wait would miss the broadcast above;
        // the stored permit wakes it as soon as it waits.
        self.0.notify_one();
    }

    /// Resolves at the next notification.
    pub async fn notified(&self) {
        self.0.notified().await
    }
}

/// The spec's retry delay: exponential from 1 s, doubling, at most 30 s, with jitter
/// (half the delay is random) so failing jobs do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let full = Duration::from_secs(1)
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(30));
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Now, from a clock that tests can control.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_thirty_with_jitter() {
        for (attempt, full) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (5, 16.0),
            (6, 30.0),
            (20, 30.0),
        ] {
            for _ in 0..50 {
                let delay = backoff(attempt).as_secs_f64();
                assert!(
                    delay >= full / 2.0 && delay <= full,
                    "attempt {attempt}: {delay}"
                );
            }
        }
    }

    #[test]
    fn queues_follow_the_spec() {
        let lead = Queue::parse("lead-processing").unwrap();
        assert_eq!((lead.priority(), lead.max_retries()), (3, 3));
        assert_eq!(Queue::AnalyticsProcessing.max_retries(), 1);
        assert_eq!(
            (Queue::EmailSync.priority(), Queue::EmailSync.max_retries()),
            (2, 5)
        );
        assert_eq!(Queue::VoiceProcessing.max_retries(), 2);
        assert!(Queue::parse("nope").is_none());
        assert_eq!(Queue::ALL.len(), 6);
    }

    #[test]
    fn an_enqueue_takes_the_queue_defaults_unless_it_names_its_own() {
        let job = new_job(Enqueue::new(Queue::EmailSync, "sync", Value::Null));
        assert_eq!((job.queue.as_str(), job.queue_priority), ("email-sync", 2));
        assert_eq!(job.max_attempts, 6);
        let mut request = Enqueue::new(Queue::BackupOperations, "export", Value::Null);
        request.max_attempts = Some(0);
        assert_eq!(new_job(request).max_attempts, 1);
    }
}
