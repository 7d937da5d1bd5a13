//! Durable job queues: the spec's queues, enqueueing, and the workers that run them.

pub mod analytics;
pub mod backup;
pub mod chat;
pub mod compliance;
pub mod email_sync;
pub mod followups;
pub mod import;
pub mod notify;
pub mod voice_audio;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use flow_store::{Job, NewJob, Store, TenantTx};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{ApiError, ApiResult};

/// One of the spec's queues.
#[derive(Clone, Copy, Debug)]
pub struct QueueDef {
    pub name: &'static str,
    /// Across queues, higher runs first (high 3, medium 2, low 1).
    pub priority: i32,
    /// Retries after the first attempt, as the spec counts them.
    pub max_retries: u32,
}

/// The spec's queues with their defaults (001 "Message Queue System").
pub const QUEUES: &[QueueDef] = &[
    QueueDef {
        name: "lead-processing",
        priority: 3,
        max_retries: 3,
    },
    QueueDef {
        name: "email-sync",
        priority: 2,
        max_retries: 5,
    },
    QueueDef {
        name: "voice-processing",
        priority: 3,
        max_retries: 2,
    },
    QueueDef {
        name: "backup-operations",
        priority: 1,
        max_retries: 3,
    },
    QueueDef {
        name: "compliance-checks",
        priority: 2,
        max_retries: 3,
    },
    QueueDef {
        name: "analytics-processing",
        priority: 1,
        max_retries: 1,
    },
];

/// The definition of a queue by name.
pub fn queue(name: &str) -> ApiResult<&'static QueueDef> {
    QUEUES
        .iter()
        .find(|q| q.name == name)
        .ok_or_else(|| ApiError::not_found(&format!("queue {name:?}")))
}

/// What to enqueue.
#[derive(Clone, Debug)]
pub struct Enqueue {
    pub queue: &'static str,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    /// Defaults to the queue's retries + 1.
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
}

impl Enqueue {
    /// A job due now with normal priority.
    pub fn new(queue: &'static str, kind: &str, payload: Value) -> Self {
        Self {
            queue,
            kind: kind.to_owned(),
            payload,
            priority: 0,
            run_at: Utc::now(),
            max_attempts: None,
            idempotency_key: None,
        }
    }
}

/// Enqueues inside the caller's transaction, so a job and the change that asks for it
/// commit together. Returns the job and whether it is new (not an idempotent repeat).
pub async fn enqueue_in(tx: &mut dyn TenantTx, request: Enqueue) -> ApiResult<(Job, bool)> {
    Ok(tx.enqueue_job(&new_job(request)?).await?)
}

/// Like [`enqueue_in`] for many jobs at once (one statement where the backend can).
pub async fn enqueue_many_in(
    tx: &mut dyn TenantTx,
    requests: Vec<Enqueue>,
) -> ApiResult<Vec<(Job, bool)>> {
    let jobs = requests
        .into_iter()
        .map(new_job)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(tx.enqueue_jobs(&jobs).await?)
}

fn new_job(request: Enqueue) -> ApiResult<NewJob> {
    let def = queue(request.queue)?;
    Ok(NewJob {
        queue: def.name.to_owned(),
        queue_priority: def.priority,
        kind: request.kind,
        payload: request.payload,
        priority: request.priority,
        run_at: request.run_at,
        max_attempts: request.max_attempts.unwrap_or(def.max_retries + 1).max(1),
        idempotency_key: request.idempotency_key,
    })
}

/// Enqueues one job for the caller in its own transaction, with an audit entry naming
/// `action`, and wakes the workers.
pub async fn start(
    store: &dyn Store,
    signal: &WorkSignal,
    caller: &crate::auth::Caller,
    request: Enqueue,
    action: &'static str,
) -> ApiResult<Job> {
    let mut work = crate::services::Work::begin(store, caller).await?;
    let (job, created) = enqueue_in(work.tx(), request).await?;
    if created {
        work.record(crate::services::Record {
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

/// Convenience for stores in tests and tools.
pub async fn get_job(
    store: &dyn Store,
    tenant: flow_store::TenantId,
    id: flow_store::JobId,
) -> ApiResult<Job> {
    let mut tx = store.read(tenant).await?;
    tx.get_job(id)
        .await
        .map_err(|e| ApiError::from_store("job", e))
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
        let lead = queue("lead-processing").unwrap();
        assert_eq!((lead.priority, lead.max_retries), (3, 3));
        assert_eq!(queue("analytics-processing").unwrap().max_retries, 1);
        assert!(queue("nope").is_err());
        assert_eq!(QUEUES.len(), 6);
    }
}
