//! Business analytics: per-tenant daily rollups (leads by status and source, conversion
//! rate, activities, voice commands, deals won), computed in the analytics-processing
//! queue and served by `GET /metrics/business`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use flow_store::{Job, Store, TenantId};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, ErrorCode};
use flow_jobs::{JobError, Processor};

/// The job kind in the analytics-processing queue.
pub const KIND: &str = crate::jobs::JobKind::Rollup.as_str();

/// Parses a `YYYY-MM-DD` day.
pub fn parse_day(day: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidDay,
            format!("{day:?} is not a YYYY-MM-DD day"),
        )
    })
}

/// Enqueues a rollup of `day` for `tenant`; once per day and hour, so repeated triggers
/// within an hour are one job.
pub async fn enqueue(store: &dyn Store, tenant: TenantId, day: NaiveDate) -> ApiResult<Job> {
    let mut tx = store.begin(tenant).await?;
    let mut request = crate::jobs::JobKind::Rollup.job(json!({ "day": day.to_string() }));
    request.idempotency_key = Some(format!("rollup:{day}:{}", Utc::now().format("%Y-%m-%dT%H")));
    let (job, _) = flow_jobs::enqueue_in(&mut *tx, request).await?;
    tx.commit().await?;
    Ok(job)
}

/// Computes and stores one day's rollup; running it again replaces the day.
pub struct Rollup;

#[async_trait]
impl Processor for Rollup {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let day = job.payload["day"]
            .as_str()
            .and_then(|d| parse_day(d).ok())
            .ok_or_else(|| JobError::Permanent(format!("bad day in {}", job.payload)))?;
        let from = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"));
        let to = from + chrono::Duration::days(1);
        let rollup = store
            .read(job.tenant_id)
            .await?
            .compute_rollup(&day.to_string(), from, to)
            .await?;
        let mut tx = store.begin(job.tenant_id).await?;
        tx.save_rollup(&rollup).await?;
        tx.commit().await?;
        serde_json::to_value(&rollup).map_err(|e| JobError::Permanent(e.to_string()))
    }
}
