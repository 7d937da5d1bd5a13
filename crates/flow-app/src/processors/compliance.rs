//! Compliance checks: a scan of one tenant for what an auditor asks about, run in the
//! compliance-checks queue; the report is the job's result.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use flow_store::{
    AuditAction, ContactFilter, EventType, Job, LeadFilter, LeadStatus, NewEvent, Store,
};
use serde_json::{json, Value};

use crate::{
    auth::Caller,
    error::ApiResult,
    services::{Record, Work},
};
use flow_jobs::{JobError, Processor};

/// The job kind in the compliance-checks queue.
pub const KIND: &str = crate::jobs::JobKind::Scan.as_str();

/// Findings listed per rule (the counts cover all of them).
const MAX_LISTED: usize = 100;

/// Starts a check; answers with the job that will hold the report.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    caller: &Caller,
) -> ApiResult<Job> {
    caller.require("write", "compliance")?;
    let request = crate::jobs::JobKind::Scan.job(json!({}));
    crate::jobs::start(store, signal, caller, request, AuditAction::ComplianceCheck).await
}

/// Scans for keys unused for 90 days, contacts without consent or source, and open leads
/// untouched for 30 days; publishes COMPLIANCE_CHECK_COMPLETED with the summary.
pub struct ComplianceScan;

#[async_trait]
impl Processor for ComplianceScan {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let now = Utc::now();
        let mut tx = store.read(job.tenant_id).await?;

        let stale_key_cutoff = now - Duration::days(90);
        let stale_keys: Vec<Value> = tx
            .list_api_keys()
            .await?
            .into_iter()
            .filter(|k| k.active && k.last_used_at.unwrap_or(k.created_at) < stale_key_cutoff)
            .map(|k| json!({ "id": k.id, "name": k.name, "lastUsedAt": k.last_used_at }))
            .collect();

        let mut contacts_without_consent = Vec::new();
        let mut contacts_without_source = Vec::new();
        let mut contacts = 0;
        let mut before = None;
        loop {
            let page = tx
                .list_contacts(&ContactFilter {
                    before,
                    limit: 500,
                    ..ContactFilter::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            for contact in &page {
                contacts += 1;
                if !contact.consent {
                    contacts_without_consent.push(contact.id);
                }
                if contact.source.is_none() {
                    contacts_without_source.push(contact.id);
                }
            }
        }

        let untouched_cutoff = now - Duration::days(30);
        let mut untouched = Vec::new();
        let mut leads = 0;
        let mut before = None;
        loop {
            let page = tx
                .list_leads(&LeadFilter {
                    before,
                    limit: 500,
                    ..LeadFilter::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            for lead in &page {
                leads += 1;
                let open = !matches!(lead.status, LeadStatus::Converted | LeadStatus::Lost);
                if open && lead.updated_at < untouched_cutoff {
                    untouched.push(lead.id);
                }
            }
        }
        drop(tx);

        let summary = json!({
            "keysUnusedFor90Days": stale_keys.len(),
            "contactsWithoutConsent": contacts_without_consent.len(),
            "contactsWithoutSource": contacts_without_source.len(),
            "leadsUntouchedFor30Days": untouched.len(),
        });
        let report = json!({
            "checkedAt": now,
            "scanned": { "contacts": contacts, "leads": leads },
            "summary": summary,
            "findings": {
                "keysUnusedFor90Days": stale_keys,
                "contactsWithoutConsent": contacts_without_consent.iter().take(MAX_LISTED).collect::<Vec<_>>(),
                "contactsWithoutSource": contacts_without_source.iter().take(MAX_LISTED).collect::<Vec<_>>(),
                "leadsUntouchedFor30Days": untouched.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            },
        });
        let caller = Caller::system(job.tenant_id);
        let mut work = Work::begin(&**store, &caller)
            .await
            .map_err(|e| JobError::Retryable(e.message))?;
        work.record(Record {
            action: AuditAction::ComplianceReport,
            entity_type: "job",
            entity_id: job.id.to_string(),
            before: None,
            after: Some(summary.clone()),
            event: Some(NewEvent::new(
                EventType::ComplianceCheckCompleted,
                "flow",
                json!({ "checkId": job.id, "summary": summary }),
            )),
        })
        .await
        .map_err(|e| JobError::Retryable(e.message))?;
        work.commit()
            .await
            .map_err(|e| JobError::Retryable(e.message))?;
        Ok(report)
    }
}
