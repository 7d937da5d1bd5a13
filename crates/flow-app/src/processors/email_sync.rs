//! The spec's Inbox AI contact sync: a batch of email headers becomes contacts (upserted by
//! address) and EMAIL activities on them, in the email-sync queue.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    Activity, ActivityFilter, ActivityId, ActivityKind, AuditAction, EntityType, Job, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    services::{
        contacts::{self, ContactInput},
        Work,
    },
    validate,
};
use flow_jobs::{JobError, Processor};

/// The job kind in the email-sync queue.
pub const KIND: &str = crate::jobs::JobKind::SyncHeaders.as_str();

/// One email header.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailHeader {
    /// The sender's address.
    pub from: String,
    /// The sender's display name, e.g. `Jane Doe`.
    pub name: Option<String>,
    pub date: DateTime<Utc>,
    pub subject: Option<String>,
}

/// Body of `POST /contacts/email-sync`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSyncRequest {
    /// At most 1,000 headers per request.
    pub emails: Vec<EmailHeader>,
}

/// Validates the batch and enqueues it.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    caller: &Caller,
    request: EmailSyncRequest,
) -> ApiResult<Job> {
    caller.require("write", "contacts")?;
    caller.require("write", "activities")?;
    if request.emails.is_empty() || request.emails.len() > 1000 {
        return Err(ApiError::validation("send 1 to 1000 email headers"));
    }
    for header in &request.emails {
        validate::email(&header.from)?;
        validate::opt_name("name", header.name.as_deref(), 200)?;
        validate::text("subject", header.subject.as_deref(), 1000)?;
    }
    let payload = json!({ "emails": request.emails });
    let request = crate::jobs::JobKind::SyncHeaders.job(payload);
    crate::jobs::start(store, signal, caller, request, AuditAction::EmailSync).await
}

/// Upserts the senders as contacts and logs each email once (a re-run skips emails
/// already logged: same contact, date and subject).
pub struct SyncHeaders;

#[async_trait]
impl Processor for SyncHeaders {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let headers: Vec<EmailHeader> = serde_json::from_value(job.payload["emails"].clone())
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let caller = crate::jobs::owner_of(job)?;
        let retry = |e: ApiError| JobError::Retryable(e.message);
        let (mut created, mut logged, mut skipped) = (0, 0, 0);
        for header in headers {
            let (first_name, last_name) = match header.name.as_deref().map(str::trim) {
                Some(name) if !name.is_empty() => match name.split_once(' ') {
                    Some((first, last)) => (Some(first.to_owned()), Some(last.trim().to_owned())),
                    None => (Some(name.to_owned()), None),
                },
                _ => (None, None),
            };
            let input = ContactInput {
                email: Some(header.from.clone()),
                first_name,
                last_name,
                source: Some("email".into()),
                ..ContactInput::default()
            };
            let (contact, was_created) = contacts::sync(&**store, &caller, input)
                .await
                .map_err(retry)?;
            created += usize::from(was_created);
            let mut work = Work::begin(&**store, &caller).await.map_err(retry)?;
            let existing = work
                .tx()
                .list_activities(&ActivityFilter {
                    entity_id: Some(contact.id.0),
                    activity_type: Some(ActivityKind::Email.to_string()),
                    limit: 1000,
                    ..ActivityFilter::default()
                })
                .await?;
            let already = existing.iter().any(|a| {
                a.data["date"] == json!(header.date) && a.data["subject"] == json!(header.subject)
            });
            if already {
                skipped += 1;
                continue;
            }
            work.tx()
                .insert_activity(&Activity {
                    id: ActivityId::new(),
                    tenant_id: job.tenant_id,
                    activity_type: ActivityKind::Email.to_string(),
                    entity_type: EntityType::Contact,
                    entity_id: contact.id.0,
                    description: header.subject.clone(),
                    data: json!({ "date": header.date, "subject": header.subject, "from": header.from }),
                    created_at: crate::services::now(),
                })
                .await?;
            work.commit().await.map_err(retry)?;
            logged += 1;
        }
        Ok(json!({ "contactsCreated": created, "emailsLogged": logged, "alreadyLogged": skipped }))
    }
}
