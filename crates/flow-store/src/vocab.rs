//! Closed vocabularies as enums with one string mapping each.

/// Declares an enum whose every variant has one wire and storage name.
///
/// Each variant is written `Variant = "name"`. The enum gets `ALL` (declaration order),
/// `as_str`, `parse`, `Display`, `FromStr` and serde under the same names, so a name is
/// spelled once and cannot drift between the API, the database and the docs. Further
/// derives (`Hash`, `PartialOrd`, `utoipa::ToSchema`, ...) go in the attributes.
#[macro_export]
macro_rules! string_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vattr:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vattr])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and storage name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses a wire or storage name.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                Self::parse(name).ok_or_else(|| $crate::UnknownName {
                    vocabulary: stringify!($name),
                    name: name.to_owned(),
                })
            }
        }
    };
}

/// A name that is not in a [`string_enum!`] vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {vocabulary} '{name}'")]
pub struct UnknownName {
    /// The enum's type name.
    pub vocabulary: &'static str,
    /// What was given.
    pub name: String,
}

string_enum! {
    /// Who did something, as the audit trail records it.
    #[derive(Hash, utoipa::ToSchema)]
    pub enum ActorKind {
        /// A request with an API key.
        ApiKey = "api_key",
        /// A signed-in user (a bearer access token).
        User = "user",
        /// A cross-app token minted for an app from a key.
        AppToken = "app_token",
        /// Flow itself: provisioning, background work.
        System = "system",
    }
}

string_enum! {
    /// What an audit entry says happened, `entity.verb`.
    #[derive(Hash, PartialOrd, Ord)]
    pub enum AuditAction {
        LeadCreate = "lead.create",
        LeadUpdate = "lead.update",
        LeadStatus = "lead.status",
        LeadAssign = "lead.assign",
        LeadDelete = "lead.delete",
        LeadsImport = "leads.import",
        ContactCreate = "contact.create",
        ContactUpdate = "contact.update",
        ContactMerge = "contact.merge",
        ContactDelete = "contact.delete",
        ContactSync = "contact.sync",
        ActivityCreate = "activity.create",
        DealCreate = "deal.create",
        DealUpdate = "deal.update",
        IncidentReport = "incident.report",
        IncidentUpdate = "incident.update",
        TenantCreate = "tenant.create",
        UserAdd = "user.add",
        UserUpdate = "user.update",
        UserRemove = "user.remove",
        ApiKeyCreate = "api_key.create",
        ApiKeyRevoke = "api_key.revoke",
        JobRequeue = "job.requeue",
        JobDelete = "job.delete",
        BackupStart = "backup.start",
        BackupComplete = "backup.complete",
        ComplianceCheck = "compliance.check",
        ComplianceReport = "compliance.report",
        EmailSync = "email.sync",
        /// One voice command run (the business rollup counts these).
        VoiceExecute = "voice.execute",
        VoiceAudio = "voice.audio",
        ChatAsk = "chat.ask",
    }
}

string_enum! {
    /// Whether a security incident still needs attention.
    #[derive(Hash, utoipa::ToSchema)]
    pub enum IncidentStatus {
        Open = "open",
        Resolved = "resolved",
    }
}

string_enum! {
    /// The activity types Flow itself writes. Clients may log others (any upper-case
    /// word), so stored activities keep their type as text.
    #[derive(Hash)]
    pub enum ActivityKind {
        LeadCreated = "LEAD_CREATED",
        StatusChanged = "STATUS_CHANGED",
        FollowUp = "FOLLOW_UP",
        DealOpened = "DEAL_OPENED",
        Email = "EMAIL",
        Meeting = "MEETING",
        SecurityIncident = "SECURITY_INCIDENT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_every_mapping() {
        for kind in ActorKind::ALL {
            assert_eq!(ActorKind::parse(kind.as_str()), Some(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
            assert_eq!(kind.as_str().parse::<ActorKind>().unwrap(), *kind);
        }
        let error = "robot".parse::<ActorKind>().unwrap_err();
        assert_eq!(error.to_string(), "unknown ActorKind 'robot'");
    }
}
