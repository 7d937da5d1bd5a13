//! Rows as SQLite returns them, turned into domain types.

use chrono::{DateTime, Utc};
use flow_store::{
    Activity, Actor, ApiKey, ApiKeyWithTenant, AuditEntry, Contact, CrossAppEvent, Deal,
    DealStatus, EntityType, EventPriority, EventType, Job, JobState, Lead, LeadStatus, LoggedEvent,
    QueueCounts, StoreResult, Tenant,
};
use flow_store::{
    ActorKind, Conversation, Incident, IncidentStatus, Invitation, Member, Membership,
    RefreshToken, Role, Severity, User,
};
use rusqlite::{types::Type, Row};
use serde_json::Value;

fn invalid(what: &str, raw: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        Type::Text,
        format!("unexpected {what} in database: {raw}").into(),
    )
}

fn time(row: &Row, column: &str) -> rusqlite::Result<DateTime<Utc>> {
    let micros: i64 = row.get(column)?;
    DateTime::from_timestamp_micros(micros).ok_or_else(|| invalid("timestamp", micros))
}

fn opt_time(row: &Row, column: &str) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<i64>>(column)?
        .map(|micros| {
            DateTime::from_timestamp_micros(micros).ok_or_else(|| invalid("timestamp", micros))
        })
        .transpose()
}

fn json(row: &Row, column: &str) -> rusqlite::Result<Value> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| invalid("JSON", e))
}

fn opt_json(row: &Row, column: &str) -> rusqlite::Result<Option<Value>> {
    row.get::<_, Option<String>>(column)?
        .map(|text| serde_json::from_str(&text).map_err(|e| invalid("JSON", e)))
        .transpose()
}

pub fn tenant(row: &Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        name: row.get("name")?,
        slug: row.get("slug")?,
        active: row.get("active")?,
        created_at: time(row, "created_at")?,
    })
}

/// An API key row with its hash and tenant state, before validation.
pub struct ApiKeyRow {
    key: ApiKey,
    key_hash: Vec<u8>,
    tenant_active: bool,
}

pub fn api_key_row(row: &Row) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        key: api_key(row)?,
        key_hash: row.get("key_hash")?,
        tenant_active: row.get("tenant_active")?,
    })
}

impl ApiKeyRow {
    pub fn into_with_tenant(self) -> StoreResult<ApiKeyWithTenant> {
        ApiKeyWithTenant::from_stored(self.key, &self.key_hash, self.tenant_active)
    }
}

pub fn api_key(row: &Row) -> rusqlite::Result<ApiKey> {
    let list = |column: &str| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(column)?;
        serde_json::from_str(&text).map_err(|e| invalid(column, e))
    };
    Ok(ApiKey {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        name: row.get("name")?,
        prefix: row.get("prefix")?,
        permissions: list("permissions")?,
        allowed_apps: list("allowed_apps")?,
        rate_limit_per_minute: u32::try_from(row.get::<_, i64>("rate_limit_per_minute")?)
            .unwrap_or(u32::MAX),
        active: row.get("active")?,
        created_at: time(row, "created_at")?,
        last_used_at: opt_time(row, "last_used_at")?,
    })
}

pub fn lead(row: &Row) -> rusqlite::Result<Lead> {
    let status: String = row.get("status")?;
    Ok(Lead {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        contact_id: row
            .get::<_, Option<uuid::Uuid>>("contact_id")?
            .map(Into::into),
        first_name: row.get("first_name")?,
        last_name: row.get("last_name")?,
        email: row.get("email")?,
        phone: row.get("phone")?,
        company: row.get("company")?,
        source: row.get("source")?,
        status: LeadStatus::parse(&status).ok_or_else(|| invalid("lead status", &status))?,
        notes: row.get("notes")?,
        assigned_to: row.get("assigned_to")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn contact(row: &Row) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        first_name: row.get("first_name")?,
        last_name: row.get("last_name")?,
        email: row.get("email")?,
        phone: row.get("phone")?,
        company: row.get("company")?,
        source: row.get("source")?,
        consent: row.get("consent")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn activity(row: &Row) -> rusqlite::Result<Activity> {
    let entity_type: String = row.get("entity_type")?;
    Ok(Activity {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        activity_type: row.get("type")?,
        entity_type: EntityType::parse(&entity_type)
            .ok_or_else(|| invalid("entity type", &entity_type))?,
        entity_id: row.get("entity_id")?,
        description: row.get("description")?,
        data: json(row, "data")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn deal(row: &Row) -> rusqlite::Result<Deal> {
    let status: String = row.get("status")?;
    Ok(Deal {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        title: row.get("title")?,
        amount: row.get("amount")?,
        currency: row.get("currency")?,
        stage: row.get("stage")?,
        status: DealStatus::parse(&status).ok_or_else(|| invalid("deal status", &status))?,
        contact_id: row
            .get::<_, Option<uuid::Uuid>>("contact_id")?
            .map(Into::into),
        lead_id: row.get::<_, Option<uuid::Uuid>>("lead_id")?.map(Into::into),
        closed_at: opt_time(row, "closed_at")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn audit(row: &Row) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        actor: Actor {
            kind: {
                let kind: String = row.get("actor_type")?;
                ActorKind::parse(&kind).ok_or_else(|| invalid("actor type", &kind))?
            },
            id: row.get("actor_id")?,
        },
        source_app: row.get("source_app")?,
        action: row.get("action")?,
        entity_type: row.get("entity_type")?,
        entity_id: row.get("entity_id")?,
        before: opt_json(row, "before")?,
        after: opt_json(row, "after")?,
        request_id: row.get("request_id")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn event(row: &Row) -> rusqlite::Result<LoggedEvent> {
    let event_type: String = row.get("type")?;
    let priority: String = row.get("priority")?;
    let target: String = row.get("target")?;
    Ok(LoggedEvent {
        seq: row.get("seq")?,
        event: CrossAppEvent {
            id: row.get::<_, uuid::Uuid>("id")?.into(),
            event_type: EventType::parse(&event_type)
                .ok_or_else(|| invalid("event type", &event_type))?,
            source: row.get("source")?,
            target: serde_json::from_str(&target).map_err(|e| invalid("event target", e))?,
            tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
            timestamp: time(row, "created_at")?,
            data: json(row, "data")?,
            priority: EventPriority::parse(&priority)
                .ok_or_else(|| invalid("event priority", &priority))?,
        },
    })
}

pub fn job(row: &Row) -> rusqlite::Result<Job> {
    let state: String = row.get("state")?;
    let errors: String = row.get("errors")?;
    Ok(Job {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        queue: row.get("queue")?,
        kind: row.get("kind")?,
        payload: json(row, "payload")?,
        priority: row.get("priority")?,
        queue_priority: row.get("queue_priority")?,
        state: JobState::parse(&state).ok_or_else(|| invalid("job state", &state))?,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        run_at: time(row, "run_at")?,
        lease_until: opt_time(row, "lease_until")?,
        idempotency_key: row.get("idempotency_key")?,
        owner: opt_json(row, "owner")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| invalid("job owner", e))?,
        errors: serde_json::from_str(&errors).map_err(|e| invalid("job errors", e))?,
        progress: opt_json(row, "progress")?,
        result: opt_json(row, "result")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        finished_at: opt_time(row, "finished_at")?,
    })
}

pub fn queue_counts(row: &Row) -> rusqlite::Result<QueueCounts> {
    let count = |column: &str| -> rusqlite::Result<u64> {
        Ok(row.get::<_, Option<i64>>(column)?.unwrap_or(0).max(0) as u64)
    };
    Ok(QueueCounts {
        queue: row.get("queue")?,
        ready: count("ready")?,
        delayed: count("delayed")?,
        running: count("running")?,
        completed: count("completed")?,
        dead: count("dead")?,
        completed_last_minute: count("completed_last_minute")?,
        oldest_ready_age_seconds: row.get::<_, Option<f64>>("oldest_ready_age")?,
    })
}

pub fn incident(row: &Row) -> rusqlite::Result<Incident> {
    let severity: String = row.get("severity")?;
    let status: String = row.get("status")?;
    Ok(Incident {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        incident_type: row.get("type")?,
        severity: Severity::parse(&severity).ok_or_else(|| invalid("severity", &severity))?,
        description: row.get("description")?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| invalid("incident status", &status))?,
        reported_by: row.get("reported_by")?,
        resolution: row.get("resolution")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        resolved_at: opt_time(row, "resolved_at")?,
    })
}

pub fn conversation(row: &Row) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        title: row.get("title")?,
        language: row.get("language")?,
        transcript: json(row, "transcript")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn user(row: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        email: row.get("email")?,
        name: row.get("name")?,
        active: row.get("active")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn invitation(row: &Row) -> rusqlite::Result<Invitation> {
    Ok(Invitation {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        tenant_id: row.get::<_, uuid::Uuid>("tenant_id")?.into(),
        email: row.get("email")?,
        role: role(row)?,
        invited_by: row.get("invited_by")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

fn role(row: &Row) -> rusqlite::Result<Role> {
    let raw: String = row.get("role")?;
    Role::parse(&raw).ok_or_else(|| invalid("role", &raw))
}

/// A tenant row joined with the member's `role`.
pub fn membership(row: &Row) -> rusqlite::Result<Membership> {
    Ok(Membership {
        tenant: tenant(row)?,
        role: role(row)?,
    })
}

/// A user row joined with the membership's `role` and `joined_at`.
pub fn member(row: &Row) -> rusqlite::Result<Member> {
    Ok(Member {
        id: row.get::<_, uuid::Uuid>("id")?.into(),
        email: row.get("email")?,
        name: row.get("name")?,
        role: role(row)?,
        created_at: time(row, "joined_at")?,
    })
}

pub fn refresh_token(row: &Row) -> rusqlite::Result<RefreshToken> {
    Ok(RefreshToken {
        family_id: row.get("family_id")?,
        user_id: row.get::<_, uuid::Uuid>("user_id")?.into(),
        expires_at: time(row, "expires_at")?,
        seal: row.get("seal")?,
    })
}
