//! Rows as PostgreSQL returns them, turned into domain types.

use flow_store::{
    Activity, Actor, ApiKey, ApiKeyWithTenant, AuditEntry, Contact, Conversation, CrossAppEvent,
    DailyRollup, Deal, DealStatus, EntityType, EventPriority, EventType, Incident, Job, JobState,
    Lead, LeadStatus, LoggedEvent, QueueCounts, Severity, StoreError, StoreResult, Tenant,
};
use flow_store::{
    ActorKind, IncidentStatus, Invitation, Member, Membership, RefreshToken, Role, User,
    UserCredentials,
};
use serde_json::Value;
use sqlx::{postgres::PgRow, Row};
use uuid::Uuid;

use crate::map_err;

fn get<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(map_err)
}

fn id<T: From<Uuid>>(row: &PgRow, column: &str) -> StoreResult<T> {
    get::<Uuid>(row, column).map(Into::into)
}

fn opt_id<T: From<Uuid>>(row: &PgRow, column: &str) -> StoreResult<Option<T>> {
    get::<Option<Uuid>>(row, column).map(|id| id.map(Into::into))
}

fn invalid(what: &str, raw: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected {what} in database: {raw}"))
}

fn parsed<T>(row: &PgRow, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let raw: String = get(row, column)?;
    parse(&raw).ok_or_else(|| invalid(column, &raw))
}

pub fn tenant(row: &PgRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: id(row, "id")?,
        name: get(row, "name")?,
        slug: get(row, "slug")?,
        active: get(row, "active")?,
        created_at: get(row, "created_at")?,
    })
}

pub fn api_key(row: &PgRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        permissions: get(row, "permissions")?,
        allowed_apps: get(row, "allowed_apps")?,
        rate_limit_per_minute: u32::try_from(get::<i32>(row, "rate_limit_per_minute")?)
            .unwrap_or(0),
        active: get(row, "active")?,
        created_at: get(row, "created_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

pub fn api_key_with_tenant(row: &PgRow) -> StoreResult<ApiKeyWithTenant> {
    let hash: Vec<u8> = get(row, "key_hash")?;
    ApiKeyWithTenant::from_stored(api_key(row)?, &hash, get(row, "tenant_active")?)
}

pub fn lead(row: &PgRow) -> StoreResult<Lead> {
    Ok(Lead {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        contact_id: opt_id(row, "contact_id")?,
        first_name: get(row, "first_name")?,
        last_name: get(row, "last_name")?,
        email: get(row, "email")?,
        phone: get(row, "phone")?,
        company: get(row, "company")?,
        source: get(row, "source")?,
        status: parsed(row, "status", LeadStatus::parse)?,
        notes: get(row, "notes")?,
        assigned_to: get(row, "assigned_to")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn contact(row: &PgRow) -> StoreResult<Contact> {
    Ok(Contact {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        first_name: get(row, "first_name")?,
        last_name: get(row, "last_name")?,
        email: get(row, "email")?,
        phone: get(row, "phone")?,
        company: get(row, "company")?,
        source: get(row, "source")?,
        consent: get(row, "consent")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn activity(row: &PgRow) -> StoreResult<Activity> {
    Ok(Activity {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        activity_type: get(row, "type")?,
        entity_type: parsed(row, "entity_type", EntityType::parse)?,
        entity_id: get(row, "entity_id")?,
        description: get(row, "description")?,
        data: get(row, "data")?,
        created_at: get(row, "created_at")?,
    })
}

pub fn deal(row: &PgRow) -> StoreResult<Deal> {
    Ok(Deal {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        title: get(row, "title")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        stage: get(row, "stage")?,
        status: parsed(row, "status", DealStatus::parse)?,
        contact_id: opt_id(row, "contact_id")?,
        lead_id: opt_id(row, "lead_id")?,
        closed_at: get(row, "closed_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn audit(row: &PgRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        actor: Actor {
            kind: parsed(row, "actor_type", ActorKind::parse)?,
            id: get(row, "actor_id")?,
        },
        source_app: get(row, "source_app")?,
        action: get(row, "action")?,
        entity_type: get(row, "entity_type")?,
        entity_id: get(row, "entity_id")?,
        before: get(row, "before")?,
        after: get(row, "after")?,
        request_id: get(row, "request_id")?,
        created_at: get(row, "created_at")?,
    })
}

pub fn event(row: &PgRow) -> StoreResult<LoggedEvent> {
    Ok(LoggedEvent {
        seq: get(row, "seq")?,
        event: CrossAppEvent {
            id: id(row, "id")?,
            event_type: parsed(row, "type", EventType::parse)?,
            source: get(row, "source")?,
            target: get(row, "target")?,
            tenant_id: id(row, "tenant_id")?,
            timestamp: get(row, "created_at")?,
            data: get(row, "data")?,
            priority: parsed(row, "priority", EventPriority::parse)?,
        },
    })
}

pub fn job(row: &PgRow) -> StoreResult<Job> {
    let errors: Value = get(row, "errors")?;
    Ok(Job {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        payload: get(row, "payload")?,
        priority: get(row, "priority")?,
        queue_priority: get(row, "queue_priority")?,
        state: parsed(row, "state", JobState::parse)?,
        attempts: get::<i32>(row, "attempts")?.max(0) as u32,
        max_attempts: get::<i32>(row, "max_attempts")?.max(0) as u32,
        run_at: get(row, "run_at")?,
        lease_until: get(row, "lease_until")?,
        idempotency_key: get(row, "idempotency_key")?,
        owner: get::<Option<Value>>(row, "owner")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| invalid("job owner", e))?,
        errors: serde_json::from_value(errors).map_err(|e| invalid("job errors", e))?,
        progress: get(row, "progress")?,
        result: get(row, "result")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

pub fn queue_counts(row: &PgRow) -> StoreResult<QueueCounts> {
    let count = |column: &str| -> StoreResult<u64> {
        Ok(get::<Option<i64>>(row, column)?.unwrap_or(0).max(0) as u64)
    };
    Ok(QueueCounts {
        queue: get(row, "queue")?,
        ready: count("ready")?,
        delayed: count("delayed")?,
        running: count("running")?,
        completed: count("completed")?,
        dead: count("dead")?,
        completed_last_minute: count("completed_last_minute")?,
        oldest_ready_age_seconds: get(row, "oldest_ready_age")?,
    })
}

pub fn incident(row: &PgRow) -> StoreResult<Incident> {
    Ok(Incident {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        incident_type: get(row, "type")?,
        severity: parsed(row, "severity", Severity::parse)?,
        description: get(row, "description")?,
        status: parsed(row, "status", IncidentStatus::parse)?,
        reported_by: get(row, "reported_by")?,
        resolution: get(row, "resolution")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        resolved_at: get(row, "resolved_at")?,
    })
}

pub fn rollup(row: &PgRow) -> StoreResult<DailyRollup> {
    serde_json::from_value(get(row, "data")?).map_err(StoreError::internal)
}

pub fn conversation(row: &PgRow) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        title: get(row, "title")?,
        language: get(row, "language")?,
        transcript: get(row, "transcript")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn user(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: id(row, "id")?,
        email: get(row, "email")?,
        name: get(row, "name")?,
        active: get(row, "active")?,
        created_at: get(row, "created_at")?,
    })
}

pub fn invitation(row: &PgRow) -> StoreResult<Invitation> {
    Ok(Invitation {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        email: get(row, "email")?,
        role: parsed(row, "role", Role::parse)?,
        invited_by: get(row, "invited_by")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

pub fn user_credentials(row: &PgRow) -> StoreResult<UserCredentials> {
    Ok(UserCredentials {
        user: user(row)?,
        password_hash: get(row, "password_hash")?,
    })
}

/// A tenant row with the member's `role`.
pub fn membership(row: &PgRow) -> StoreResult<Membership> {
    Ok(Membership {
        tenant: tenant(row)?,
        role: parsed(row, "role", Role::parse)?,
    })
}

/// A user row with the membership's `role` and `joined_at`.
pub fn member(row: &PgRow) -> StoreResult<Member> {
    Ok(Member {
        id: id(row, "id")?,
        email: get(row, "email")?,
        name: get(row, "name")?,
        role: parsed(row, "role", Role::parse)?,
        created_at: get(row, "joined_at")?,
    })
}

pub fn refresh_token(row: &PgRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        family_id: get(row, "family_id")?,
        user_id: id(row, "user_id")?,
        expires_at: get(row, "expires_at")?,
        seal: get(row, "seal")?,
    })
}
