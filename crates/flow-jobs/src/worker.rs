//! Workers: take due jobs, run their processor, and settle them (done, retry, dead).

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use flow_store::{
    AttemptError, ClaimRequest, Job, JobId, JobSettlement, Settlement, Store, StoreError,
    StoreResult,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{backoff, Clock, JobMetrics, Queue, WorkSignal};

type SettleRequest = (JobSettlement, oneshot::Sender<StoreResult<bool>>);

/// Settles the attempts of all of a process's workers together: each worker still waits
/// for its own outcome, and one statement carries whatever arrived meanwhile (group
/// commit for settlements). It stops when the last worker holding it is gone.
#[derive(Clone)]
pub struct Settler {
    sender: mpsc::Sender<SettleRequest>,
}

/// Most settlements in one statement.
const SETTLE_BATCH: usize = 256;

impl Settler {
    /// Starts the settling task over `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (sender, mut receiver) = mpsc::channel::<SettleRequest>(1024);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(SETTLE_BATCH);
            while let Some(first) = receiver.recv().await {
                batch.push(first);
                while batch.len() < SETTLE_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let settlements: Vec<JobSettlement> =
                    batch.iter().map(|(s, _)| s.clone()).collect();
                match store.settle_jobs(&settlements).await {
                    Ok(settled) => {
                        for ((_, reply), ok) in batch.drain(..).zip(settled) {
                            let _ = reply.send(Ok(ok));
                        }
                    }
                    Err(error) => {
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Hands over one attempt's outcome; the answer says whether it still held its job.
    pub async fn submit(
        &self,
        settlement: JobSettlement,
    ) -> StoreResult<oneshot::Receiver<StoreResult<bool>>> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((settlement, reply))
            .await
            .map_err(|_| settler_gone())?;
        Ok(answer)
    }
}

fn settler_gone() -> StoreError {
    StoreError::Unavailable("the settling task has stopped".into())
}

/// A finished attempt whose outcome is on its way to the database.
struct Settling {
    answer: oneshot::Receiver<StoreResult<bool>>,
    job_id: JobId,
    queue: String,
    status: &'static str,
    started: std::time::Instant,
    outcome: ExecutionOutcome,
}

/// Where an attempt stands once its processor returned.
enum Step {
    Done(ExecutionOutcome),
    Settling(Settling),
}

/// Why an attempt failed.
#[derive(Debug)]
pub enum JobError {
    /// Worth another attempt (a timeout, an unavailable dependency).
    Retryable(String),
    /// Will fail again (bad input): straight to the dead-letter queue.
    Permanent(String),
}

impl From<StoreError> for JobError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(message) => JobError::Retryable(message),
            other => JobError::Permanent(other.to_string()),
        }
    }
}

/// Does the work of one kind of job.
#[async_trait]
pub trait Processor: Send + Sync {
    /// Runs one attempt; the value becomes the job's `result`. Must be idempotent: a job
    /// whose worker died runs again.
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError>;
}

/// Processors by (queue, kind).
#[derive(Clone, Default)]
pub struct Processors(HashMap<(String, String), Arc<dyn Processor>>);

impl Processors {
    /// Registers the processor for `kind` jobs in `queue`.
    pub fn register(&mut self, queue: Queue, kind: &str, processor: Arc<dyn Processor>) {
        self.0
            .insert((queue.as_str().to_owned(), kind.to_owned()), processor);
    }

    /// Registers [`Ping`] in every queue.
    pub fn with_ping(mut self) -> Self {
        for queue in Queue::ALL {
            self.register(*queue, PING, Arc::new(Ping));
        }
        self
    }

    fn get(&self, job: &Job) -> Option<&Arc<dyn Processor>> {
        self.0.get(&(job.queue.clone(), job.kind.clone()))
    }
}

/// What one step of a worker did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// No job was due.
    Idle,
    Completed(JobId),
    /// Failed; due again at the given time.
    Retrying(JobId, chrono::DateTime<Utc>),
    /// Failed for good: in the dead-letter queue.
    Dead(JobId),
    /// Finished after its lease ran out and another worker took it over: not recorded.
    LeaseLost(JobId),
}

/// Runs jobs from the spec's queues.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    processors: Arc<Processors>,
    clock: Arc<dyn Clock>,
    metrics: JobMetrics,
    /// How long a job stays taken without its worker reporting back.
    pub lease: Duration,
    /// Shares settlement statements with the process's other workers; without one each
    /// attempt is settled on its own (as the step-by-step tests do).
    pub settler: Option<Settler>,
    /// Lets one of the process's workers claim at a time. Concurrent claims from one
    /// process only fight over the head of the ready index (each skipping the rows the
    /// others just locked); one at a time, each claim is short and takes a whole batch.
    pub claim_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Worker {
    /// A worker over `store` with `processors`.
    pub fn new(
        store: Arc<dyn Store>,
        processors: Processors,
        clock: Arc<dyn Clock>,
        metrics: JobMetrics,
    ) -> Self {
        Self {
            store,
            processors: Arc::new(processors),
            clock,
            metrics,
            lease: Duration::from_secs(60),
            settler: None,
            claim_gate: None,
        }
    }

    /// Takes and runs at most one due job.
    pub async fn try_execute_task(&self) -> Result<ExecutionOutcome, StoreError> {
        Ok(self
            .try_execute_batch(1)
            .await?
            .pop()
            .unwrap_or(ExecutionOutcome::Idle))
    }

    /// Takes up to `limit` due jobs and runs them one after another.
    pub async fn try_execute_batch(&self, limit: u32) -> Result<Vec<ExecutionOutcome>, StoreError> {
        let gate = match &self.claim_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        };
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60));
        let jobs = self
            .store
            .claim_jobs(&ClaimRequest {
                queues: Queue::ALL.iter().map(|q| q.as_str().to_owned()).collect(),
                now,
                lease_until: now + lease,
                limit,
            })
            .await?;
        drop(gate);
        let mut steps = Vec::with_capacity(jobs.len());
        let mut held: Vec<(JobId, u32)> = jobs.iter().map(|j| (j.id, j.attempts)).collect();
        for job in jobs {
            // The next job starts while this one's outcome is being written; the settler
            // writes it together with other workers' outcomes.
            steps.push(self.execute(job, &held).await?);
            held.remove(0);
        }
        let mut outcomes = Vec::with_capacity(steps.len());
        for step in steps {
            outcomes.push(self.finish(step).await?);
        }
        Ok(outcomes)
    }

    /// Waits for an attempt's outcome to be written.
    async fn finish(&self, step: Step) -> Result<ExecutionOutcome, StoreError> {
        let settling = match step {
            Step::Done(outcome) => return Ok(outcome),
            Step::Settling(settling) => settling,
        };
        let settled = settling.answer.await.map_err(|_| settler_gone())??;
        if !settled {
            return Ok(ExecutionOutcome::LeaseLost(settling.job_id));
        }
        self.metrics
            .job_processed(&settling.queue, settling.status, settling.started.elapsed());
        Ok(settling.outcome)
    }

    async fn execute(&self, job: Job, held: &[(JobId, u32)]) -> Result<Step, StoreError> {
        let started = std::time::Instant::now();
        let running = self.metrics.job_running(&job.queue);
        let result = match self.processors.get(&job) {
            // Taken over after its last allowed attempt stopped answering (the lease ran
            // out): a job that kills its worker would otherwise be retried forever.
            Some(_) if job.attempts > job.max_attempts => Err(JobError::Permanent(format!(
                "attempt {} of {} stopped answering before its lease ran out; not run again",
                job.attempts - 1,
                job.max_attempts
            ))),
            Some(processor) => {
                // Keep the leases of this job and of the batch still waiting alive while a
                // long job runs, so no other worker takes them over.
                let work = processor.process(&self.store, &job);
                tokio::pin!(work);
                let period = (self.lease / 3).max(std::time::Duration::from_millis(10));
                // The first beat is one period away. An interval's immediate first tick
                // still waits for the timer wheel's next millisecond, about 1 ms per job:
                // that alone cut the embedded queue from 17,000 to 3,000 jobs/s (issue 22).
                let mut heartbeat =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    tokio::select! {
                        // The job first: a job that is done at once never arms the timer.
                        biased;
                        result = &mut work => break result,
                        _ = heartbeat.tick() => {
                            let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60));
                            let until = self.clock.now() + lease;
                            for (id, attempt) in held {
                                let _ = self.store.extend_lease(*id, *attempt, until).await;
                            }
                        }
                    }
                }
            }
            None => Err(JobError::Permanent(format!(
                "no processor for {} jobs in {}",
                job.kind, job.queue
            ))),
        };
        drop(running);
        let now = self.clock.now();
        let (settlement, outcome, status) = match result {
            Ok(result) => (
                Settlement::Completed { result },
                ExecutionOutcome::Completed(job.id),
                "completed",
            ),
            Err(error) => {
                let (message, retryable) = match error {
                    JobError::Retryable(m) => (m, true),
                    JobError::Permanent(m) => (m, false),
                };
                tracing::warn!(job = %job.id, queue = %job.queue, attempt = job.attempts, %message, "job attempt failed");
                let error = AttemptError {
                    attempt: job.attempts,
                    at: now,
                    message,
                };
                if retryable && job.attempts < job.max_attempts {
                    let run_at =
                        now + chrono::Duration::from_std(backoff(job.attempts)).unwrap_or_default();
                    (
                        Settlement::Retry { error, run_at },
                        ExecutionOutcome::Retrying(job.id, run_at),
                        "retried",
                    )
                } else {
                    (
                        Settlement::Dead { error },
                        ExecutionOutcome::Dead(job.id),
                        "dead",
                    )
                }
            }
        };
        if let Some(settler) = &self.settler {
            let answer = settler
                .submit(JobSettlement {
                    id: job.id,
                    attempt: job.attempts,
                    settlement,
                    now,
                })
                .await?;
            return Ok(Step::Settling(Settling {
                answer,
                job_id: job.id,
                queue: job.queue,
                status,
                started,
                outcome,
            }));
        }
        match self
            .store
            .settle_job(job.id, job.attempts, &settlement, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Ok(Step::Done(ExecutionOutcome::LeaseLost(job.id)))
            }
            Err(other) => return Err(other),
        }
        self.metrics
            .job_processed(&job.queue, status, started.elapsed());
        Ok(Step::Done(outcome))
    }

    /// Runs until `shutdown`: takes work when signalled or every `poll` otherwise. A job
    /// in hand is finished before the worker stops.
    pub async fn run(
        self,
        signal: WorkSignal,
        poll: Duration,
        batch: u32,
        shutdown: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            match self.try_execute_batch(batch).await {
                Ok(outcomes) if !outcomes.is_empty() => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "worker could not take jobs"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = signal.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// The `ping` job every queue understands: completes at once, echoing its payload. Proves
/// a queue's path end to end (enqueue, claim, settle) and measures its overhead.
pub struct Ping;

/// The kind name of [`Ping`].
pub const PING: &str = "ping";

#[async_trait]
impl Processor for Ping {
    async fn process(&self, _store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        Ok(serde_json::json!({ "pong": job.payload }))
    }
}
