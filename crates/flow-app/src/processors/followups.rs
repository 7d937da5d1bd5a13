//! The spec's LeadProcessor follow-ups: a qualified lead gets a follow-up task, a converted
//! lead opens a deal. Both are idempotent: a re-run finds its earlier work.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use flow_store::{
    Activity, ActivityFilter, ActivityId, ActivityKind, DealFilter, EntityType, Job, LeadId, Store,
};
use serde_json::{json, Value};

use crate::{
    auth::Caller,
    error::ApiError,
    services::{
        deals::{self, CreateDeal},
        now, Work,
    },
};
use flow_jobs::{JobError, Processor};

/// Job kind for a lead that became QUALIFIED.
pub const QUALIFIED: &str = crate::jobs::JobKind::LeadQualified.as_str();
/// Job kind for a lead that became CONVERTED.
pub const CONVERTED: &str = crate::jobs::JobKind::LeadConverted.as_str();

/// Runs both follow-ups.
pub struct LeadFollowUp;

fn retry(e: ApiError) -> JobError {
    if e.code.is_server_side() {
        JobError::Retryable(e.message)
    } else {
        JobError::Permanent(e.message)
    }
}

#[async_trait]
impl Processor for LeadFollowUp {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let lead_id: LeadId = serde_json::from_value(job.payload["leadId"].clone())
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let caller = Caller::system(job.tenant_id);
        let lead = match store.read(job.tenant_id).await?.get_lead(lead_id).await {
            Ok(lead) => lead,
            // Deleted since: nothing left to follow up.
            Err(flow_store::StoreError::NotFound) => {
                return Ok(json!({ "skipped": "lead deleted" }))
            }
            Err(other) => return Err(other.into()),
        };
        match job.kind.as_str() {
            QUALIFIED => {
                let mut work = Work::begin(&**store, &caller).await.map_err(retry)?;
                let filter = ActivityFilter {
                    entity_id: Some(lead.id.0),
                    activity_type: Some(ActivityKind::FollowUp.to_string()),
                    limit: 1,
                    ..ActivityFilter::default()
                };
                if let Some(existing) = work.tx().list_activities(&filter).await?.first() {
                    return Ok(json!({ "activityId": existing.id }));
                }
                let due = Utc::now() + Duration::days(1);
                let activity = Activity {
                    id: ActivityId::new(),
                    tenant_id: job.tenant_id,
                    activity_type: ActivityKind::FollowUp.to_string(),
                    entity_type: EntityType::Lead,
                    entity_id: lead.id.0,
                    description: Some(format!("Follow up with {} within a day", lead.first_name)),
                    data: json!({ "dueAt": due, "assignedTo": lead.assigned_to }),
                    created_at: now(),
                };
                work.tx().insert_activity(&activity).await?;
                work.commit().await.map_err(retry)?;
                Ok(json!({ "activityId": activity.id }))
            }
            CONVERTED => {
                let existing = store
                    .read(job.tenant_id)
                    .await?
                    .list_deals(&DealFilter {
                        contact_id: lead.contact_id,
                        limit: 100,
                        ..DealFilter::default()
                    })
                    .await?
                    .into_iter()
                    .find(|d| d.lead_id == Some(lead.id));
                if let Some(deal) = existing {
                    return Ok(json!({ "dealId": deal.id }));
                }
                let title = match &lead.company {
                    Some(company) => format!(
                        "{company} ({} {})",
                        lead.first_name,
                        lead.last_name.clone().unwrap_or_default()
                    ),
                    None => format!(
                        "{} {}",
                        lead.first_name,
                        lead.last_name.clone().unwrap_or_default()
                    ),
                };
                let deal = deals::create(
                    &**store,
                    &caller,
                    CreateDeal {
                        title: title.trim().to_owned(),
                        amount: 0,
                        currency: None,
                        stage: Some("won-lead".into()),
                        contact_id: lead.contact_id,
                        lead_id: Some(lead.id),
                    },
                )
                .await
                .map_err(retry)?;
                let mut work = Work::begin(&**store, &caller).await.map_err(retry)?;
                work.tx()
                    .insert_activity(&Activity {
                        id: ActivityId::new(),
                        tenant_id: job.tenant_id,
                        activity_type: ActivityKind::DealOpened.to_string(),
                        entity_type: EntityType::Lead,
                        entity_id: lead.id.0,
                        description: Some(format!("Converted: deal {:?} opened", deal.title)),
                        data: json!({ "dealId": deal.id }),
                        created_at: now(),
                    })
                    .await?;
                work.commit().await.map_err(retry)?;
                Ok(json!({ "dealId": deal.id }))
            }
            other => Err(JobError::Permanent(format!("unknown follow-up {other}"))),
        }
    }
}
