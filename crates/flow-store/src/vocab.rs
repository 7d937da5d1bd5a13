//! Flow's closed vocabularies of the storage model.

use flow_vocab::string_enum;

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
        UserInvite = "user.invite",
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
        assert!("robot".parse::<ActorKind>().is_err());
    }
}
