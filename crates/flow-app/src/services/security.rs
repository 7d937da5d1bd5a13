//! Security incidents (the spec's security event propagation, 001): a report is stored,
//! logged as a SECURITY_INCIDENT activity on the incident, and published as a
//! SECURITY_INCIDENT event to the secure-platform and business-dashboard rooms.

use flow_store::{
    Activity, ActivityId, ActivityKind, AuditAction, EntityType, EventType, Incident, IncidentId,
    IncidentStatus, NewEvent, Severity, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{now, read, snapshot, Record, Work};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    validate,
};

/// Body of `POST /compliance/report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportIncident {
    /// What happened, e.g. `data_breach`.
    #[serde(rename = "type")]
    pub incident_type: String,
    pub severity: Severity,
    pub description: String,
}

/// Body of `PATCH /incidents/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateIncident {
    /// `resolved` closes the incident, `open` reopens it.
    pub status: String,
    pub resolution: Option<String>,
}

/// Query of `GET /incidents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListIncidents {
    /// `open` or `resolved`.
    pub status: Option<String>,
    /// 1-100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// What the business dashboard shows about security.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityMetrics {
    pub active_incidents: u64,
    pub active_by_severity: std::collections::BTreeMap<String, u64>,
    /// The most severe open incident, if any.
    pub highest_active_severity: Option<Severity>,
}

fn status(value: &str) -> ApiResult<IncidentStatus> {
    IncidentStatus::parse(value).ok_or_else(|| {
        ApiError::validation(format!("status must be open or resolved, not {value:?}"))
    })
}

/// Stores a reported incident, logs it, and publishes SECURITY_INCIDENT.
pub async fn report(
    store: &dyn Store,
    caller: &Caller,
    input: ReportIncident,
) -> ApiResult<Incident> {
    caller.require("write", "incidents")?;
    let at = now();
    let incident = Incident {
        id: IncidentId::new(),
        tenant_id: caller.tenant_id,
        incident_type: validate::slug("type", &input.incident_type)?,
        severity: input.severity,
        description: validate::text("description", Some(&input.description), 2_000)?
            .ok_or_else(|| ApiError::validation("description must not be empty"))?,
        status: IncidentStatus::Open,
        reported_by: caller.source_app.clone(),
        resolution: None,
        created_at: at,
        updated_at: at,
        resolved_at: None,
    };
    let mut work = Work::begin(store, caller).await?;
    work.tx().insert_incident(&incident).await?;
    work.tx()
        .insert_activity(&Activity {
            id: ActivityId::new(),
            tenant_id: caller.tenant_id,
            activity_type: ActivityKind::SecurityIncident.to_string(),
            entity_type: EntityType::Incident,
            entity_id: incident.id.0,
            description: Some(format!(
                "{} incident reported: {}",
                incident.severity.as_str(),
                incident.incident_type
            )),
            data: json!({ "severity": incident.severity, "reportedBy": incident.reported_by }),
            created_at: at,
        })
        .await?;
    let mut event = NewEvent::new(
        EventType::SecurityIncident,
        &caller.source_app,
        json!({ "incident": incident }),
    );
    event.priority = incident.severity.event_priority();
    work.record(Record {
        action: AuditAction::IncidentReport,
        entity_type: "incident",
        entity_id: incident.id.to_string(),
        before: None,
        after: snapshot(&incident),
        event: Some(event),
    })
    .await?;
    work.commit().await?;
    Ok(incident)
}

/// Incidents of the caller's tenant, newest first.
pub async fn list(
    store: &dyn Store,
    caller: &Caller,
    query: ListIncidents,
) -> ApiResult<Vec<Incident>> {
    caller.require("read", "security")?;
    let status = query.status.as_deref().map(status).transpose()?;
    let limit = validate::limit(query.limit)?;
    Ok(read(store, caller)
        .await?
        .list_incidents(status.map(IncidentStatus::as_str), limit)
        .await?)
}

/// One incident.
pub async fn get(store: &dyn Store, caller: &Caller, id: IncidentId) -> ApiResult<Incident> {
    caller.require("read", "security")?;
    read(store, caller)
        .await?
        .get_incident(id)
        .await
        .map_err(|e| ApiError::from_store("incident", e))
}

/// Resolves or reopens an incident; publishes the change as SECURITY_INCIDENT.
pub async fn update(
    store: &dyn Store,
    caller: &Caller,
    id: IncidentId,
    input: UpdateIncident,
) -> ApiResult<Incident> {
    caller.require("write", "incidents")?;
    let new_status = status(&input.status)?;
    let resolution = validate::text("resolution", input.resolution.as_deref(), 2_000)?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .get_incident(id)
        .await
        .map_err(|e| ApiError::from_store("incident", e))?;
    if before.status == new_status {
        return Ok(before);
    }
    let mut incident = before.clone();
    incident.status = new_status;
    incident.resolution = resolution.or(before.resolution.clone());
    incident.updated_at = now();
    incident.resolved_at = (new_status == IncidentStatus::Resolved).then(now);
    work.tx().update_incident(&incident).await?;
    let mut event = NewEvent::new(
        EventType::SecurityIncident,
        &caller.source_app,
        json!({ "incident": incident }),
    );
    event.priority = flow_store::EventPriority::Low;
    work.record(Record {
        action: AuditAction::IncidentUpdate,
        entity_type: "incident",
        entity_id: incident.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&incident),
        event: Some(event),
    })
    .await?;
    work.commit().await?;
    Ok(incident)
}

/// Open incidents in numbers, for the business dashboard.
pub async fn metrics(store: &dyn Store, caller: &Caller) -> ApiResult<SecurityMetrics> {
    if !caller.permissions.allows("read", "metrics") {
        caller.require("read", "security")?;
    }
    // Open incidents are few by nature; a tenant with more than this has bigger problems
    // than an approximate dashboard count.
    let open = read(store, caller)
        .await?
        .list_incidents(Some("open"), 10_000)
        .await?;
    let mut by_severity = std::collections::BTreeMap::new();
    for incident in &open {
        *by_severity
            .entry(incident.severity.as_str().to_owned())
            .or_insert(0) += 1;
    }
    Ok(SecurityMetrics {
        active_incidents: open.len() as u64,
        highest_active_severity: open.iter().map(|i| i.severity).max(),
        active_by_severity: by_severity,
    })
}
