//! Leads: creation with the lead-to-contact flow, the status machine, assignment.

use chrono::{DateTime, Utc};
use flow_store::{
    Activity, ActivityId, ActivityKind, AuditAction, Contact, ContactId, EntityType, EventType,
    Lead, LeadFilter, LeadId, LeadStatus, NewEvent, Store,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{decode_cursor, now, read, snapshot, Page, Record, Work};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    jobs::JobKind,
    validate,
};

// The `pattern`s below are the constants of `validate.rs` (`NAME_PATTERN`, ...), which
// explain them; `tests/it/schema.rs` (flow-server) checks they stay the same.

/// Body of `POST /leads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateLead {
    /// 1-100 characters, none of them ``< > ; { } " \ ` | $ =`` or a control character.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r#"^(?=\s*\S)[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub first_name: String,
    /// At most 100 characters, with the characters of `firstName`.
    #[schema(
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub last_name: Option<String>,
    /// Used to find or create the lead's contact.
    #[schema(
        format = Email,
        max_length = 254,
        pattern = r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#
    )]
    pub email: Option<String>,
    /// 6-15 digits, with spaces and `+ ( ) - .` allowed; at most 32 characters.
    #[schema(max_length = 32, pattern = r#"^(?:[ +().-]*[0-9]){6,15}[ +().-]*$"#)]
    pub phone: Option<String>,
    /// At most 200 characters, with the characters of `firstName`.
    #[schema(
        max_length = 200,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub company: Option<String>,
    /// Where the lead came from, e.g. `website`; defaults to the calling app.
    /// 1-64 letters, digits, `.`, `_` or `-`, stored lower-cased.
    #[schema(min_length = 1, max_length = 64, pattern = r#"^[A-Za-z0-9._-]{1,64}$"#)]
    pub source: Option<String>,
    /// At most 10,000 characters; line breaks and tabs are the only control characters.
    #[schema(
        max_length = 10000,
        pattern = r#"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"#
    )]
    pub notes: Option<String>,
    /// Have the voice agent announce the new lead (VOICE_NOTIFICATION to voice-agent).
    #[serde(default)]
    pub voice_notification_enabled: bool,
}

/// Body of `PATCH /leads/{id}`: only the fields present change; `null` clears a field.
/// Each field has the limits of `CreateLead`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateLead {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r#"^(?=\s*\S)[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        format = Email,
        max_length = 254,
        pattern = r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#
    )]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 32,
        pattern = r#"^(?:[ +().-]*[0-9]){6,15}[ +().-]*$"#
    )]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 200,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub company: Option<Option<String>>,
    #[schema(min_length = 1, max_length = 64, pattern = r#"^[A-Za-z0-9._-]{1,64}$"#)]
    pub source: Option<String>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 10000,
        pattern = r#"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"#
    )]
    pub notes: Option<Option<String>>,
}

/// Body of `PATCH /leads/{id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeStatus {
    pub status: LeadStatus,
    /// Why, e.g. for a lost lead; kept in the activity and event. At most 1,000
    /// characters; line breaks and tabs are the only control characters.
    #[schema(
        max_length = 1000,
        pattern = r#"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"#
    )]
    pub reason: Option<String>,
}

/// Body of `POST /leads/{id}/assign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignLead {
    /// Who owns the lead from now on (a user's email or name); `null` unassigns.
    /// At most 200 characters, none of them ``< > ; { } " \ ` | $ =`` or a control character.
    #[schema(
        max_length = 200,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub assignee: Option<String>,
}

/// Query of `GET /leads`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListLeads {
    pub status: Option<LeadStatus>,
    /// 1-64 letters, digits, `.`, `_` or `-`.
    #[param(min_length = 1, max_length = 64, pattern = r#"^[A-Za-z0-9._-]{1,64}$"#)]
    pub source: Option<String>,
    /// Free text matched against names, email, company and phone (at most 100 characters).
    #[param(max_length = 100, pattern = r#"^[^\u0000-\u001f\u007f-\u009f]*$"#)]
    pub q: Option<String>,
    /// Only leads created after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Creates a lead, finds or creates its contact by email, and logs a LEAD_CREATED activity.
pub async fn create(store: &dyn Store, caller: &Caller, input: CreateLead) -> ApiResult<Lead> {
    let notify = input.voice_notification_enabled;
    let lead = validated(caller, input)?;
    let mut work = Work::begin(store, caller).await?;
    let lead = create_in(&mut work, lead, notify).await?;
    work.commit().await?;
    Ok(lead)
}

/// A new lead from `input`, checked, not yet stored.
pub fn validated(caller: &Caller, input: CreateLead) -> ApiResult<Lead> {
    caller.require("write", "leads")?;
    let at = now();
    Ok(Lead {
        id: LeadId::new(),
        tenant_id: caller.tenant_id,
        contact_id: None,
        first_name: validate::name("firstName", &input.first_name, 100)?,
        last_name: validate::opt_name("lastName", input.last_name.as_deref(), 100)?,
        email: validate::opt_email(input.email.as_deref())?,
        phone: validate::opt_phone(input.phone.as_deref())?,
        company: validate::opt_name("company", input.company.as_deref(), 200)?,
        source: match input.source.as_deref() {
            Some(source) => validate::slug("source", source)?,
            None => caller.source_app.clone(),
        },
        status: LeadStatus::New,
        notes: validate::text("notes", input.notes.as_deref(), 10_000)?,
        assigned_to: None,
        created_at: at,
        updated_at: at,
    })
}

/// Stores a [`validated`] lead within `work`: its contact (found by email or new), the
/// activity, audit and events, and the voice notification when asked for.
pub async fn create_in(
    work: &mut Work<'_>,
    mut lead: Lead,
    voice_notification: bool,
) -> ApiResult<Lead> {
    let caller = work.caller().clone();
    let at = lead.created_at;
    let existing = match &lead.email {
        Some(email) => work.tx().find_contact_by_email(email).await?,
        None => None,
    };
    let contact = match existing {
        Some(contact) => contact,
        None => {
            let contact = Contact {
                id: ContactId::new(),
                tenant_id: caller.tenant_id,
                first_name: Some(lead.first_name.clone()),
                last_name: lead.last_name.clone(),
                email: lead.email.clone(),
                phone: lead.phone.clone(),
                company: lead.company.clone(),
                source: Some("lead".into()),
                consent: false,
                created_at: at,
                updated_at: at,
            };
            work.tx().insert_contact(&contact).await?;
            work.record(Record {
                action: AuditAction::ContactCreate,
                entity_type: "contact",
                entity_id: contact.id.to_string(),
                before: None,
                after: snapshot(&contact),
                event: Some(NewEvent::new(
                    EventType::ContactCreated,
                    &caller.source_app,
                    json!({ "contact": contact, "leadId": lead.id }),
                )),
            })
            .await?;
            contact
        }
    };
    lead.contact_id = Some(contact.id);
    work.tx().insert_lead(&lead).await?;
    work.tx()
        .insert_activity(&Activity {
            id: ActivityId::new(),
            tenant_id: caller.tenant_id,
            activity_type: ActivityKind::LeadCreated.to_string(),
            entity_type: EntityType::Lead,
            entity_id: lead.id.0,
            description: Some(format!("Lead created from {}", lead.source)),
            data: json!({ "contactId": contact.id, "source": lead.source }),
            created_at: at,
        })
        .await?;
    work.record(Record {
        action: AuditAction::LeadCreate,
        entity_type: "lead",
        entity_id: lead.id.to_string(),
        before: None,
        after: snapshot(&lead),
        event: Some(NewEvent::new(
            EventType::LeadCreated,
            &caller.source_app,
            json!({ "lead": lead }),
        )),
    })
    .await?;
    if voice_notification {
        let name = [Some(lead.first_name.as_str()), lead.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let payload = json!({
            "message": format!("New lead received: {name}"),
            "language": "en",
            "priority": "medium",
            "leadId": lead.id,
        });
        let mut request = JobKind::Notify.job(payload);
        request.idempotency_key = Some(format!("notify:{}", lead.id));
        flow_jobs::enqueue_in(work.tx(), request).await?;
    }
    Ok(lead)
}

/// One lead of the caller's tenant.
pub async fn get(store: &dyn Store, caller: &Caller, id: LeadId) -> ApiResult<Lead> {
    caller.require("read", "leads")?;
    read(store, caller)
        .await?
        .get_lead(id)
        .await
        .map_err(|e| ApiError::from_store("lead", e))
}

/// A page of leads, newest first.
pub async fn list(store: &dyn Store, caller: &Caller, query: ListLeads) -> ApiResult<Page<Lead>> {
    caller.require("read", "leads")?;
    let limit = validate::limit(query.limit)?;
    let filter = LeadFilter {
        status: query.status,
        email: None,
        source: query
            .source
            .as_deref()
            .map(|s| validate::slug("source", s))
            .transpose()?,
        text: validate::search_text(query.q)?,
        created_after: query.created_after,
        before: decode_cursor(query.cursor.as_deref())?.map(LeadId),
        limit: limit + 1,
    };
    let rows = read(store, caller).await?.list_leads(&filter).await?;
    Ok(Page::from_rows(rows, limit, |lead| lead.id.0))
}

/// Changes a lead's details (not its status, which has its own rules).
pub async fn update(
    store: &dyn Store,
    caller: &Caller,
    id: LeadId,
    patch: UpdateLead,
) -> ApiResult<Lead> {
    caller.require("write", "leads")?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_lead(id)
        .await
        .map_err(|e| ApiError::from_store("lead", e))?;
    let mut lead = before.clone();
    if let Some(first_name) = &patch.first_name {
        lead.first_name = validate::name("firstName", first_name, 100)?;
    }
    if let Some(last_name) = &patch.last_name {
        lead.last_name = validate::opt_name("lastName", last_name.as_deref(), 100)?;
    }
    if let Some(email) = &patch.email {
        lead.email = validate::opt_email(email.as_deref())?;
    }
    if let Some(phone) = &patch.phone {
        lead.phone = validate::opt_phone(phone.as_deref())?;
    }
    if let Some(company) = &patch.company {
        lead.company = validate::opt_name("company", company.as_deref(), 200)?;
    }
    if let Some(source) = &patch.source {
        lead.source = validate::slug("source", source)?;
    }
    if let Some(notes) = &patch.notes {
        lead.notes = validate::text("notes", notes.as_deref(), 10_000)?;
    }
    let changed = changed_fields(&before, &lead);
    if changed.is_empty() {
        return Ok(before);
    }
    lead.updated_at = now();
    work.tx().update_lead(&lead).await?;
    work.record(Record {
        action: AuditAction::LeadUpdate,
        entity_type: "lead",
        entity_id: lead.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&lead),
        event: Some(NewEvent::new(
            EventType::LeadUpdated,
            &caller.source_app,
            json!({ "lead": lead, "changed": changed }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(lead)
}

fn changed_fields(before: &Lead, after: &Lead) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("firstName", before.first_name != after.first_name);
    check("lastName", before.last_name != after.last_name);
    check("email", before.email != after.email);
    check("phone", before.phone != after.phone);
    check("company", before.company != after.company);
    check("source", before.source != after.source);
    check("notes", before.notes != after.notes);
    changed
}

/// Moves a lead through NEW -> CONTACTED -> QUALIFIED -> CONVERTED, or to LOST.
pub async fn change_status(
    store: &dyn Store,
    caller: &Caller,
    id: LeadId,
    input: ChangeStatus,
) -> ApiResult<Lead> {
    caller.require("write", "leads")?;
    let reason = validate::text("reason", input.reason.as_deref(), 1_000)?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_lead(id)
        .await
        .map_err(|e| ApiError::from_store("lead", e))?;
    if before.status == input.status {
        // Repeating a status change is a no-op, so clients can retry safely.
        return Ok(before);
    }
    if !before.status.can_become(input.status) {
        let allowed: Vec<&str> = LeadStatus::ALL
            .iter()
            .filter(|s| before.status.can_become(**s))
            .map(|s| s.as_str())
            .collect();
        return Err(ApiError::new(
            ErrorCode::InvalidStatusTransition,
            format!(
                "a {} lead cannot become {}; allowed: {}",
                before.status.as_str(),
                input.status.as_str(),
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    }
    let mut lead = before.clone();
    lead.status = input.status;
    lead.updated_at = now();
    work.tx().update_lead(&lead).await?;
    work.tx()
        .insert_activity(&Activity {
            id: ActivityId::new(),
            tenant_id: caller.tenant_id,
            activity_type: ActivityKind::StatusChanged.to_string(),
            entity_type: EntityType::Lead,
            entity_id: lead.id.0,
            description: Some(format!(
                "Status changed from {} to {}",
                before.status.as_str(),
                lead.status.as_str()
            )),
            data: json!({ "from": before.status, "to": lead.status, "reason": reason }),
            created_at: lead.updated_at,
        })
        .await?;
    work.record(Record {
        action: AuditAction::LeadStatus,
        entity_type: "lead",
        entity_id: lead.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&lead),
        event: Some(NewEvent::new(
            EventType::LeadStatusChanged,
            &caller.source_app,
            json!({ "leadId": lead.id, "from": before.status, "to": lead.status, "reason": reason, "lead": lead }),
        )),
    })
    .await?;
    // The spec's processLeadQualified / processLeadConverted follow-ups run in the queue,
    // committed with the change that asks for them.
    let follow_up = match lead.status {
        LeadStatus::Qualified => Some(JobKind::LeadQualified),
        LeadStatus::Converted => Some(JobKind::LeadConverted),
        _ => None,
    };
    if let Some(kind) = follow_up {
        let mut request = kind.job(json!({ "leadId": lead.id }));
        request.idempotency_key = Some(format!("{kind}:{}", lead.id));
        flow_jobs::enqueue_in(work.tx(), request).await?;
    }
    work.commit().await?;
    Ok(lead)
}

/// Gives a lead an owner, or takes it away.
pub async fn assign(
    store: &dyn Store,
    caller: &Caller,
    id: LeadId,
    input: AssignLead,
) -> ApiResult<Lead> {
    caller.require("write", "leads")?;
    let assignee = validate::opt_name("assignee", input.assignee.as_deref(), 200)?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_lead(id)
        .await
        .map_err(|e| ApiError::from_store("lead", e))?;
    if before.assigned_to == assignee {
        return Ok(before);
    }
    let mut lead = before.clone();
    lead.assigned_to = assignee;
    lead.updated_at = now();
    work.tx().update_lead(&lead).await?;
    work.record(Record {
        action: AuditAction::LeadAssign,
        entity_type: "lead",
        entity_id: lead.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&lead),
        event: Some(NewEvent::new(
            EventType::LeadAssigned,
            &caller.source_app,
            json!({ "leadId": lead.id, "assignee": lead.assigned_to, "previous": before.assigned_to }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(lead)
}

/// Deletes a lead; its history stays in the audit trail.
pub async fn delete(store: &dyn Store, caller: &Caller, id: LeadId) -> ApiResult<()> {
    caller.require("write", "leads")?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_lead(id)
        .await
        .map_err(|e| ApiError::from_store("lead", e))?;
    work.tx().delete_lead(id).await?;
    work.record(Record {
        action: AuditAction::LeadDelete,
        entity_type: "lead",
        entity_id: id.to_string(),
        before: snapshot(&before),
        after: None,
        event: Some(NewEvent::new(
            EventType::LeadDeleted,
            &caller.source_app,
            json!({ "leadId": id }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(())
}
