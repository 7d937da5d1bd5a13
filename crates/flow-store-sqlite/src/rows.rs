//! Row shapes as SQLite returns them, and their conversion into domain types.

use flow_store::{
    Activity, Actor, ApiKey, ApiKeyWithTenant, AuditEntry, Contact, CrossAppEvent, Deal,
    DealStatus, EntityType, EventType, Lead, LeadStatus, LoggedEvent, StoreError, StoreResult,
    Tenant,
};
use serde_json::Value;
use uuid::Uuid;

use crate::{from_micros, internal};

fn json(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(internal)
}

fn opt_json(text: Option<String>) -> StoreResult<Option<Value>> {
    text.as_deref().map(json).transpose()
}

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("unexpected {what} in database: {value:?}"))
}

#[derive(sqlx::FromRow)]
pub struct TenantRow {
    id: Uuid,
    name: String,
    slug: String,
    active: bool,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Tenant {
            id: row.id.into(),
            name: row.name,
            slug: row.slug,
            active: row.active,
            created_at: from_micros(row.created_at).unwrap_or_default(),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ApiKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    prefix: String,
    key_hash: Vec<u8>,
    permissions: String,
    allowed_apps: String,
    rate_limit_per_minute: i64,
    active: bool,
    created_at: i64,
    last_used_at: Option<i64>,
    #[sqlx(default)]
    tenant_active: Option<bool>,
}

impl ApiKeyRow {
    pub fn into_with_tenant(self) -> StoreResult<ApiKeyWithTenant> {
        let key_hash: [u8; 32] = self
            .key_hash
            .as_slice()
            .try_into()
            .map_err(|_| bad("key hash length", &self.key_hash.len().to_string()))?;
        let tenant_active = self.tenant_active.unwrap_or(false);
        Ok(ApiKeyWithTenant {
            key: self.into_key()?,
            key_hash,
            tenant_active,
        })
    }

    pub fn into_key(self) -> StoreResult<ApiKey> {
        Ok(ApiKey {
            id: self.id.into(),
            tenant_id: self.tenant_id.into(),
            name: self.name,
            prefix: self.prefix,
            permissions: serde_json::from_str(&self.permissions).map_err(internal)?,
            allowed_apps: serde_json::from_str(&self.allowed_apps).map_err(internal)?,
            rate_limit_per_minute: u32::try_from(self.rate_limit_per_minute).unwrap_or(u32::MAX),
            active: self.active,
            created_at: from_micros(self.created_at)?,
            last_used_at: self.last_used_at.map(from_micros).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct LeadRow {
    id: Uuid,
    tenant_id: Uuid,
    contact_id: Option<Uuid>,
    first_name: String,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    source: String,
    status: String,
    notes: Option<String>,
    assigned_to: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<LeadRow> for Lead {
    type Error = StoreError;
    fn try_from(row: LeadRow) -> StoreResult<Self> {
        Ok(Lead {
            id: row.id.into(),
            tenant_id: row.tenant_id.into(),
            contact_id: row.contact_id.map(Into::into),
            first_name: row.first_name,
            last_name: row.last_name,
            email: row.email,
            phone: row.phone,
            company: row.company,
            source: row.source,
            status: LeadStatus::parse(&row.status)
                .ok_or_else(|| bad("lead status", &row.status))?,
            notes: row.notes,
            assigned_to: row.assigned_to,
            created_at: from_micros(row.created_at)?,
            updated_at: from_micros(row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ContactRow {
    id: Uuid,
    tenant_id: Uuid,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    source: Option<String>,
    consent: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ContactRow> for Contact {
    type Error = StoreError;
    fn try_from(row: ContactRow) -> StoreResult<Self> {
        Ok(Contact {
            id: row.id.into(),
            tenant_id: row.tenant_id.into(),
            first_name: row.first_name,
            last_name: row.last_name,
            email: row.email,
            phone: row.phone,
            company: row.company,
            source: row.source,
            consent: row.consent,
            created_at: from_micros(row.created_at)?,
            updated_at: from_micros(row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ActivityRow {
    id: Uuid,
    tenant_id: Uuid,
    #[sqlx(rename = "type")]
    activity_type: String,
    entity_type: String,
    entity_id: Uuid,
    description: Option<String>,
    data: String,
    created_at: i64,
}

impl TryFrom<ActivityRow> for Activity {
    type Error = StoreError;
    fn try_from(row: ActivityRow) -> StoreResult<Self> {
        Ok(Activity {
            id: row.id.into(),
            tenant_id: row.tenant_id.into(),
            activity_type: row.activity_type,
            entity_type: EntityType::parse(&row.entity_type)
                .ok_or_else(|| bad("entity type", &row.entity_type))?,
            entity_id: row.entity_id,
            description: row.description,
            data: json(&row.data)?,
            created_at: from_micros(row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct DealRow {
    id: Uuid,
    tenant_id: Uuid,
    title: String,
    amount: i64,
    currency: String,
    stage: Option<String>,
    status: String,
    contact_id: Option<Uuid>,
    lead_id: Option<Uuid>,
    closed_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<DealRow> for Deal {
    type Error = StoreError;
    fn try_from(row: DealRow) -> StoreResult<Self> {
        Ok(Deal {
            id: row.id.into(),
            tenant_id: row.tenant_id.into(),
            title: row.title,
            amount: row.amount,
            currency: row.currency,
            stage: row.stage,
            status: DealStatus::parse(&row.status)
                .ok_or_else(|| bad("deal status", &row.status))?,
            contact_id: row.contact_id.map(Into::into),
            lead_id: row.lead_id.map(Into::into),
            closed_at: row.closed_at.map(from_micros).transpose()?,
            created_at: from_micros(row.created_at)?,
            updated_at: from_micros(row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    id: Uuid,
    tenant_id: Uuid,
    actor_type: String,
    actor_id: String,
    source_app: String,
    action: String,
    entity_type: String,
    entity_id: String,
    before: Option<String>,
    after: Option<String>,
    request_id: Option<String>,
    created_at: i64,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> StoreResult<Self> {
        Ok(AuditEntry {
            id: row.id.into(),
            tenant_id: row.tenant_id.into(),
            actor: Actor {
                kind: row.actor_type,
                id: row.actor_id,
            },
            source_app: row.source_app,
            action: row.action,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            before: opt_json(row.before)?,
            after: opt_json(row.after)?,
            request_id: row.request_id,
            created_at: from_micros(row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    tenant_id: Uuid,
    seq: i64,
    id: Uuid,
    #[sqlx(rename = "type")]
    event_type: String,
    source: String,
    target: String,
    data: String,
    priority: String,
    created_at: i64,
}

impl TryFrom<EventRow> for LoggedEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> StoreResult<Self> {
        Ok(LoggedEvent {
            seq: row.seq,
            event: CrossAppEvent {
                id: row.id.into(),
                event_type: EventType::parse(&row.event_type)
                    .ok_or_else(|| bad("event type", &row.event_type))?,
                source: row.source,
                target: serde_json::from_str(&row.target).map_err(internal)?,
                tenant_id: row.tenant_id.into(),
                timestamp: from_micros(row.created_at)?,
                data: json(&row.data)?,
                priority: serde_json::from_value(Value::String(row.priority.clone()))
                    .map_err(|_| bad("event priority", &row.priority))?,
            },
        })
    }
}
