//! The queue's Prometheus metrics, registered into the server's registry.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Job attempts, their durations, queue sizes and jobs in flight.
#[derive(Clone)]
pub struct JobMetrics {
    jobs_processed: IntCounterVec,
    job_duration: HistogramVec,
    queue_size: IntGaugeVec,
    jobs_running: IntGaugeVec,
}

/// Decrements the running-jobs gauge when dropped.
pub struct RunningGuard {
    gauge: IntGauge,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl JobMetrics {
    /// Creates the queue metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            jobs_processed: IntCounterVec::new(
                Opts::new(
                    "message_queue_processed_total",
                    "Job attempts finished, by outcome",
                ),
                &["queue_name", "status"],
            )?,
            job_duration: HistogramVec::new(
                HistogramOpts::new(
                    "message_queue_job_duration_seconds",
                    "Time a job attempt ran",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
                ]),
                &["queue_name"],
            )?,
            queue_size: IntGaugeVec::new(
                Opts::new(
                    "message_queue_size",
                    "Jobs waiting (ready and delayed), all tenants",
                ),
                &["queue_name"],
            )?,
            jobs_running: IntGaugeVec::new(
                Opts::new(
                    "message_queue_jobs_running",
                    "Jobs this process is executing right now",
                ),
                &["queue_name"],
            )?,
        };
        registry.register(Box::new(metrics.jobs_processed.clone()))?;
        registry.register(Box::new(metrics.job_duration.clone()))?;
        registry.register(Box::new(metrics.queue_size.clone()))?;
        registry.register(Box::new(metrics.jobs_running.clone()))?;
        Ok(metrics)
    }

    /// Metrics registered nowhere, for workers whose figures nobody reads (tools, tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry takes every metric")
    }

    /// Counts a job this process runs until the returned guard drops.
    pub fn job_running(&self, queue: &str) -> RunningGuard {
        let gauge = self.jobs_running.with_label_values(&[queue]);
        gauge.inc();
        RunningGuard { gauge }
    }

    /// Counts a finished job attempt (`completed`, `retried`, `dead`) and times it.
    pub fn job_processed(&self, queue: &str, status: &str, duration: std::time::Duration) {
        self.jobs_processed
            .with_label_values(&[queue, status])
            .inc();
        self.job_duration
            .with_label_values(&[queue])
            .observe(duration.as_secs_f64());
    }

    /// Sets how many jobs wait in a queue.
    pub fn set_queue_size(&self, queue: &str, size: u64) {
        self.queue_size.with_label_values(&[queue]).set(size as i64);
    }
}
