use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{
    ActivityId, ApiKeyId, AuditId, ContactId, DealId, EventId, EventPriority, EventType,
    InvitationId, LeadId, TenantId, UserId,
};

/// A tenant: one business and everything it owns.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// An API key as stored: only the SHA-256 of its secret is kept.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    /// The first characters of the secret, enough to recognise a key in a list.
    pub prefix: String,
    pub permissions: Vec<String>,
    /// Apps allowed to present this key in `x-source-app`; `*` allows any.
    pub allowed_apps: Vec<String>,
    /// Requests per minute (token bucket capacity and refill).
    pub rate_limit_per_minute: u32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What the key lookup returns: the key, and whether its tenant is active.
#[derive(Clone, Debug)]
pub struct ApiKeyWithTenant {
    pub key: ApiKey,
    pub key_hash: [u8; 32],
    pub tenant_active: bool,
}

/// A new API key; the caller generates the secret and passes only its hash.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    pub key_hash: [u8; 32],
    pub permissions: Vec<String>,
    pub allowed_apps: Vec<String>,
    pub rate_limit_per_minute: u32,
}

crate::string_enum! {
    /// A lead's place in the sales funnel (declared in funnel order).
    #[derive(Hash, ToSchema)]
    pub enum LeadStatus {
        New = "NEW",
        Contacted = "CONTACTED",
        Qualified = "QUALIFIED",
        Converted = "CONVERTED",
        Lost = "LOST",
    }
}

impl LeadStatus {
    /// The funnel moves one step forward at a time; anything not yet lost can be lost.
    pub fn can_become(self, next: LeadStatus) -> bool {
        use LeadStatus::*;
        matches!(
            (self, next),
            (New, Contacted) | (Contacted, Qualified) | (Qualified, Converted)
        ) || (next == Lost && self != Lost)
    }
}

/// A sales lead.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    pub id: LeadId,
    pub tenant_id: TenantId,
    /// The contact this lead belongs to, found or created from its email at creation.
    pub contact_id: Option<ContactId>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub source: String,
    pub status: LeadStatus,
    pub notes: Option<String>,
    pub assigned_to: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters and page position for listing leads, newest first.
#[derive(Clone, Debug, Default)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    /// Exact (normalised) email.
    pub email: Option<String>,
    pub source: Option<String>,
    /// Free text matched against names, email, company and phone.
    pub text: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    /// Only leads older (smaller id) than this one.
    pub before: Option<LeadId>,
    pub limit: u32,
}

/// Leads and contacts are found by the same fields of free text: names, email, company, phone.
const TEXT_FIELDS: &[&str] = &["first_name", "last_name", "email", "company", "phone"];

impl LeadFilter {
    /// The fields `text` is matched against, named as their columns are.
    pub const TEXT_FIELDS: &'static [&'static str] = TEXT_FIELDS;
}

/// A person or company the tenant deals with.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: ContactId,
    pub tenant_id: TenantId,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Lower-case and trimmed; unique within the tenant.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
    /// Whether the contact consented to be contacted.
    pub consent: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters and page position for listing contacts, newest first.
#[derive(Clone, Debug, Default)]
pub struct ContactFilter {
    pub email: Option<String>,
    /// Free text matched against names, email, company and phone.
    pub text: Option<String>,
    pub before: Option<ContactId>,
    pub limit: u32,
}

impl ContactFilter {
    /// The fields `text` is matched against, named as their columns are.
    pub const TEXT_FIELDS: &'static [&'static str] = TEXT_FIELDS;
}

crate::string_enum! {
    /// The kinds of record an activity can be about.
    #[derive(ToSchema)]
    pub enum EntityType {
        Lead = "lead",
        Contact = "contact",
        Deal = "deal",
        Incident = "incident",
    }
}

/// Something that happened to a lead, contact or deal: a call, a note, a status change.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub id: ActivityId,
    pub tenant_id: TenantId,
    /// Upper-case kind, e.g. `CALL`, `NOTE`, `LEAD_CREATED`, `STATUS_CHANGED`.
    #[serde(rename = "type")]
    pub activity_type: String,
    pub entity_type: EntityType,
    pub entity_id: uuid::Uuid,
    pub description: Option<String>,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

/// Filters and page position for listing activities, newest first.
#[derive(Clone, Debug, Default)]
pub struct ActivityFilter {
    pub entity_id: Option<uuid::Uuid>,
    pub activity_type: Option<String>,
    pub before: Option<ActivityId>,
    pub limit: u32,
}

crate::string_enum! {
    /// A deal's outcome.
    #[derive(ToSchema)]
    pub enum DealStatus {
        Open = "OPEN",
        Won = "WON",
        Lost = "LOST",
    }
}

/// A sales opportunity with a value.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deal {
    pub id: DealId,
    pub tenant_id: TenantId,
    pub title: String,
    /// Value in minor units of `currency` (øre, cents).
    pub amount: i64,
    /// ISO 4217 code, e.g. `DKK`.
    pub currency: String,
    pub stage: Option<String>,
    pub status: DealStatus,
    pub contact_id: Option<ContactId>,
    pub lead_id: Option<LeadId>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters and page position for listing deals, newest first.
#[derive(Clone, Debug, Default)]
pub struct DealFilter {
    pub status: Option<DealStatus>,
    pub contact_id: Option<ContactId>,
    pub before: Option<DealId>,
    pub limit: u32,
}

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: crate::ActorKind,
    pub id: String,
}

/// One entry of the audit trail.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: AuditId,
    pub tenant_id: TenantId,
    pub actor: Actor,
    pub source_app: String,
    /// What happened, e.g. `lead.create`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An audit entry to write; the store adds id, tenant and time.
#[derive(Clone, Debug)]
pub struct NewAuditEntry {
    pub actor: Actor,
    pub source_app: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
}

/// Filters and page position for reading the audit trail, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub entity_id: Option<String>,
    pub before: Option<AuditId>,
    pub limit: u32,
}

/// The spec's `CrossAppEvent`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossAppEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The app that caused the event.
    pub source: String,
    /// The apps the event is meant for (besides everyone in the tenant room).
    pub target: Vec<String>,
    pub tenant_id: TenantId,
    pub timestamp: DateTime<Utc>,
    pub data: Value,
    pub priority: EventPriority,
}

/// An event as kept in the tenant's log, with its position in the tenant's total order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedEvent {
    /// Position in the tenant's log: 1, 2, 3, ... without gaps.
    pub seq: i64,
    pub event: CrossAppEvent,
}

/// An event to append; the store assigns id, sequence number and time.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_type: EventType,
    pub source: String,
    pub data: Value,
    pub priority: EventPriority,
}

impl NewEvent {
    /// An event with its type's default priority.
    pub fn new(event_type: EventType, source: impl Into<String>, data: Value) -> Self {
        Self {
            event_type,
            source: source.into(),
            data,
            priority: event_type.default_priority(),
        }
    }
}

crate::string_enum! {
    /// How bad a security incident is.
    #[derive(PartialOrd, Ord, Hash, ToSchema)]
    pub enum Severity {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

impl Severity {
    /// The priority of the SECURITY_INCIDENT event for an incident this severe.
    pub fn event_priority(self) -> EventPriority {
        match self {
            Severity::Low => EventPriority::Low,
            Severity::Medium => EventPriority::Medium,
            Severity::High => EventPriority::High,
            Severity::Critical => EventPriority::Critical,
        }
    }
}

/// A security incident reported by the Secure Platform (or any app allowed to).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: crate::IncidentId,
    pub tenant_id: TenantId,
    /// What happened, e.g. `data_breach`, `brute_force`.
    #[serde(rename = "type")]
    pub incident_type: String,
    pub severity: Severity,
    pub description: String,
    pub status: crate::IncidentStatus,
    pub reported_by: String,
    pub resolution: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A conversation with the voice agent: its turns as a JSON array.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: crate::ConversationId,
    pub tenant_id: TenantId,
    pub title: Option<String>,
    /// `da` or `en`, from the latest turn.
    pub language: Option<String>,
    /// Turns in order: `{role, text, at, ...}`.
    #[schema(value_type = Vec<Object>)]
    pub transcript: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A person who signs in to the dashboard; may belong to several tenants.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    /// Stored lowercased: one account per address.
    pub email: String,
    pub name: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// What the sign-in path needs: the user and the argon2id hash of the password (PHC string).
#[derive(Clone, Debug)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// A user to create; the caller hashes the password.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password_hash: String,
}

crate::string_enum! {
    /// A user's role in one tenant (the spec's RBAC).
    #[derive(ToSchema)]
    pub enum Role {
        Admin = "admin",
        User = "user",
        Viewer = "viewer",
    }
}

/// One tenant a user belongs to, as the sign-in path sees it.
#[derive(Clone, Debug)]
pub struct Membership {
    pub tenant: Tenant,
    pub role: Role,
}

/// A member of a tenant, as the tenant's admins see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The user's id.
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// When the user joined this tenant.
    pub created_at: DateTime<Utc>,
}

/// An invitation to join a tenant with a role. The person it is for accepts it with its
/// token (only the hash is stored), and only then becomes a member: nobody is added to a
/// tenant without consent.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub id: InvitationId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Normalised (lower-case) email of the person invited.
    pub email: String,
    pub role: Role,
    /// Who invited (an actor id).
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    /// After this the token no longer works; inviting again issues a new one.
    pub expires_at: DateTime<Utc>,
}

/// An invitation to store, replacing any pending one for the same email in the tenant.
#[derive(Clone, Debug)]
pub struct NewInvitation {
    pub invitation: Invitation,
    pub token_hash: [u8; 32],
}

/// A refresh token as stored (only its hash is kept); tokens rotate within a family.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    /// The sign-in this token descends from; reuse of a spent token revokes the family.
    pub family_id: uuid::Uuid,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// The application's MAC over the hash, the user and the family (see `NewRefreshToken`).
    pub seal: Option<Vec<u8>>,
}

/// A refresh token to store.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub family_id: uuid::Uuid,
    pub user_id: UserId,
    pub token_hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
    /// A MAC, keyed with the application's secret, binding the token to its user and
    /// family: a row written by anyone holding only database access (a session for
    /// someone else) fails it.
    pub seal: [u8; 32],
}

/// What presenting a refresh token found.
#[derive(Clone, Debug)]
pub enum RefreshTokenUse {
    /// Unspent, unexpired, not revoked: now marked spent.
    Fresh(RefreshToken),
    /// Already spent: someone holds a copy. The caller revokes the family.
    Reused(RefreshToken),
    /// Unknown, expired or revoked.
    Invalid,
}
