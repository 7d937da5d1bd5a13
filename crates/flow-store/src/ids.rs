use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id: newer ids sort after older ones.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    )*};
}

typed_id!(
    /// Identifies a tenant: the unit of isolation.
    TenantId,
    /// Identifies an API key (not the secret itself).
    ApiKeyId,
    /// Identifies a lead.
    LeadId,
    /// Identifies a contact.
    ContactId,
    /// Identifies an activity.
    ActivityId,
    /// Identifies a deal.
    DealId,
    /// Identifies an event in the event log.
    EventId,
    /// Identifies an audit entry.
    AuditId,
    /// Identifies a queued job.
    JobId,
    /// Identifies a security incident.
    IncidentId,
    /// Identifies a voice conversation.
    ConversationId,
    /// Identifies a user (a person who signs in).
    UserId,
    /// Identifies an invitation to join a tenant.
    InvitationId,
);
