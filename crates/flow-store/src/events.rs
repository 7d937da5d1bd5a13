crate::string_enum! {
    /// The spec's cross-application event types, plus the few Flow adds for completeness.
    #[derive(Hash, utoipa::ToSchema)]
    pub enum EventType {
        LeadCreated = "LEAD_CREATED",
        LeadUpdated = "LEAD_UPDATED",
        LeadStatusChanged = "LEAD_STATUS_CHANGED",
        LeadAssigned = "LEAD_ASSIGNED",
        LeadDeleted = "LEAD_DELETED",
        ContactCreated = "CONTACT_CREATED",
        ContactUpdated = "CONTACT_UPDATED",
        ContactMerged = "CONTACT_MERGED",
        ActivityCreated = "ACTIVITY_CREATED",
        ActivityCompleted = "ACTIVITY_COMPLETED",
        MeetingScheduled = "MEETING_SCHEDULED",
        VoiceCommandExecuted = "VOICE_COMMAND_EXECUTED",
        VoiceProcessingStarted = "VOICE_PROCESSING_STARTED",
        VoiceProcessingCompleted = "VOICE_PROCESSING_COMPLETED",
        SecurityIncident = "SECURITY_INCIDENT",
        ComplianceCheckCompleted = "COMPLIANCE_CHECK_COMPLETED",
        BackupCompleted = "BACKUP_COMPLETED",
        DealCreated = "DEAL_CREATED",
        DealUpdated = "DEAL_UPDATED",
        DealWon = "DEAL_WON",
        DealLost = "DEAL_LOST",
        RevenueMilestone = "REVENUE_MILESTONE",
        TenantCreated = "TENANT_CREATED",
        UserLoggedIn = "USER_LOGGED_IN",
        SystemMaintenance = "SYSTEM_MAINTENANCE",
        JobProgress = "JOB_PROGRESS",
        JobCompleted = "JOB_COMPLETED",
        VoiceNotification = "VOICE_NOTIFICATION",
    }
}

impl EventType {
    /// The resource whose `read` grant lets a caller see events of this type, on the log
    /// and on sockets: an event carries the record it is about. (An event routed to the
    /// caller's own app reaches it too: the routing table is the spec's grant.)
    pub const fn resource(self) -> &'static str {
        use EventType::*;
        match self {
            LeadCreated | LeadUpdated | LeadStatusChanged | LeadAssigned | LeadDeleted => "leads",
            ContactCreated | ContactUpdated | ContactMerged => "contacts",
            ActivityCreated | ActivityCompleted | MeetingScheduled => "activities",
            DealCreated | DealUpdated | DealWon | DealLost | RevenueMilestone => "deals",
            VoiceCommandExecuted
            | VoiceProcessingStarted
            | VoiceProcessingCompleted
            | VoiceNotification => "voice",
            SecurityIncident => "security",
            ComplianceCheckCompleted | BackupCompleted => "compliance",
            TenantCreated | UserLoggedIn => "users",
            JobProgress | JobCompleted => "jobs",
            // Flow's notices to everyone connected.
            SystemMaintenance => "events",
        }
    }
}

crate::string_enum! {
    /// How urgent an event is for its consumers (the spec's `priority`).
    #[derive(PartialOrd, Ord, utoipa::ToSchema)]
    pub enum EventPriority {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

/// One row of the routing table: which app rooms an event type targets and its default priority.
struct Route {
    event_type: EventType,
    target_apps: &'static [&'static str],
    priority: EventPriority,
}

/// The spec's `determineTargetRooms`, as data. Types it does not name reach the tenant room only.
const ROUTES: &[Route] = &[
    Route {
        event_type: EventType::LeadCreated,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::LeadUpdated,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::LeadStatusChanged,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::LeadAssigned,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::LeadDeleted,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::ContactCreated,
        target_apps: &["inbox-ai", "crm-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::ContactUpdated,
        target_apps: &["inbox-ai", "crm-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::ContactMerged,
        target_apps: &["inbox-ai", "crm-web"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::ActivityCreated,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::ActivityCompleted,
        target_apps: &["crm-web", "flow-web"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::MeetingScheduled,
        target_apps: &["crm-web", "flow-web", "voice-agent"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::VoiceCommandExecuted,
        target_apps: &["flow-web", "voice-agent"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::VoiceProcessingStarted,
        target_apps: &["flow-web", "voice-agent"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::VoiceProcessingCompleted,
        target_apps: &["flow-web", "voice-agent"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::SecurityIncident,
        target_apps: &["secure-platform", "business-dashboard"],
        priority: EventPriority::High,
    },
    Route {
        event_type: EventType::ComplianceCheckCompleted,
        target_apps: &["secure-platform", "business-dashboard"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::BackupCompleted,
        target_apps: &["secure-platform", "business-dashboard"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::DealCreated,
        target_apps: &["crm-web", "business-dashboard"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::DealUpdated,
        target_apps: &["crm-web", "business-dashboard"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::DealWon,
        target_apps: &["crm-web", "business-dashboard"],
        priority: EventPriority::High,
    },
    Route {
        event_type: EventType::DealLost,
        target_apps: &["crm-web", "business-dashboard"],
        priority: EventPriority::Medium,
    },
    Route {
        event_type: EventType::RevenueMilestone,
        target_apps: &["business-dashboard", "flow-web"],
        priority: EventPriority::High,
    },
    Route {
        event_type: EventType::TenantCreated,
        target_apps: &[],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::UserLoggedIn,
        target_apps: &["secure-platform"],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::SystemMaintenance,
        target_apps: &[],
        priority: EventPriority::High,
    },
    // Flow's own: background jobs report to whoever in the tenant watches.
    Route {
        event_type: EventType::JobProgress,
        target_apps: &[],
        priority: EventPriority::Low,
    },
    Route {
        event_type: EventType::JobCompleted,
        target_apps: &[],
        priority: EventPriority::Low,
    },
    // The spec's voiceApiClient.scheduleNotification: something for the voice agent to say.
    Route {
        event_type: EventType::VoiceNotification,
        target_apps: &["voice-agent"],
        priority: EventPriority::Medium,
    },
];

impl EventType {
    fn route(self) -> &'static Route {
        ROUTES
            .iter()
            .find(|route| route.event_type == self)
            .expect("every event type has a route: checked by a unit test")
    }

    /// The apps whose rooms receive this event type, besides the tenant room.
    pub fn target_apps(self) -> &'static [&'static str] {
        self.route().target_apps
    }

    /// The priority an event of this type carries unless its producer says otherwise.
    pub fn default_priority(self) -> EventPriority {
        self.route().priority
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_one_route_and_a_matching_name() {
        assert_eq!(EventType::ALL.len(), ROUTES.len());
        for (i, t) in EventType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(
                ROUTES.iter().filter(|r| r.event_type == *t).count(),
                1,
                "{t:?}"
            );
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn spec_routing_table() {
        assert_eq!(
            EventType::LeadCreated.target_apps(),
            ["crm-web", "flow-web"]
        );
        assert_eq!(
            EventType::ContactUpdated.target_apps(),
            ["inbox-ai", "crm-web"]
        );
        assert_eq!(
            EventType::VoiceCommandExecuted.target_apps(),
            ["flow-web", "voice-agent"]
        );
        assert_eq!(
            EventType::SecurityIncident.target_apps(),
            ["secure-platform", "business-dashboard"]
        );
    }
}
