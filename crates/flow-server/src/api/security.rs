//! `/compliance/report`, `/incidents` and `/metrics/security`.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::{
    processors,
    services::{
        read,
        security::{self, ListIncidents, ReportIncident, SecurityMetrics, UpdateIncident},
    },
};
use flow_store::{Incident, IncidentId, Job, JobId};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpError, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// The security routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_incident))
        .routes(routes!(list_incidents))
        .routes(routes!(get_incident, update_incident))
        .routes(routes!(security_metrics))
        .routes(routes!(start_compliance_check))
        .routes(routes!(get_compliance_check))
}

/// Report a security incident (the Secure Platform's call): stored, logged as a
/// SECURITY_INCIDENT activity on it, and published to the secure-platform and
/// business-dashboard rooms with a priority from its severity.
#[utoipa::path(post, path = "/compliance/report", tag = "security", request_body = ReportIncident,
    responses((status = 201, body = Incident), (status = "4XX", body = ErrorBody)))]
async fn report_incident(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<ReportIncident>,
) -> HttpResult<(StatusCode, Json<Incident>)> {
    Ok((
        StatusCode::CREATED,
        Json(security::report(&*state.store, &caller, input).await?),
    ))
}

/// List incidents, newest first.
#[utoipa::path(get, path = "/incidents", tag = "security", params(ListIncidents),
    responses((status = 200, body = Vec<Incident>), (status = "4XX", body = ErrorBody)))]
async fn list_incidents(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListIncidents>,
) -> HttpResult<Json<Vec<Incident>>> {
    Ok(Json(security::list(&*state.store, &caller, query).await?))
}

/// Get one incident.
#[utoipa::path(get, path = "/incidents/{id}", tag = "security", params(("id" = IncidentId, Path)),
    responses((status = 200, body = Incident), (status = "4XX", body = ErrorBody)))]
async fn get_incident(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<IncidentId>,
) -> HttpResult<Json<Incident>> {
    Ok(Json(security::get(&*state.store, &caller, id).await?))
}

/// Resolve (or reopen) an incident.
#[utoipa::path(patch, path = "/incidents/{id}", tag = "security", params(("id" = IncidentId, Path)), request_body = UpdateIncident,
    responses((status = 200, body = Incident), (status = "4XX", body = ErrorBody)))]
async fn update_incident(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<IncidentId>,
    ApiJson(input): ApiJson<UpdateIncident>,
) -> HttpResult<Json<Incident>> {
    Ok(Json(
        security::update(&*state.store, &caller, id, input).await?,
    ))
}

/// Open incidents in numbers, for the business dashboard.
#[utoipa::path(get, path = "/metrics/security", tag = "security",
    responses((status = 200, body = SecurityMetrics), (status = "4XX", body = ErrorBody)))]
async fn security_metrics(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<SecurityMetrics>> {
    Ok(Json(security::metrics(&*state.store, &caller).await?))
}

/// Start a compliance check of this tenant (keys unused for 90 days, contacts without
/// consent or source, open leads untouched for 30 days). Answers 202; the report is the
/// job's result, also at `GET /compliance/checks/{id}`.
#[utoipa::path(post, path = "/compliance/checks", tag = "security",
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_compliance_check(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = processors::compliance::start(&*state.store, &state.work_signal, &caller).await?;
    Ok(Accepted::response(
        &job,
        format!("/compliance/checks/{}", job.id),
    ))
}

/// A compliance check: its state and, once done, its report.
#[utoipa::path(get, path = "/compliance/checks/{id}", tag = "security", params(("id" = JobId, Path)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
async fn get_compliance_check(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<JobId>,
) -> HttpResult<Json<Job>> {
    caller.require("read", "compliance")?;
    let job = read(&*state.store, &caller)
        .await?
        .get_job(id)
        .await
        .map_err(|e| flow_app::ApiError::from_store("compliance check", e))?;
    if job.queue != flow_jobs::Queue::ComplianceChecks.as_str() {
        return Err(HttpError::not_found("compliance check"));
    }
    Ok(Json(job))
}
