//! `/compliance/report`, `/incidents` and `/metrics/security`.

use axum::{extract::State, http::StatusCode, Json};
use flow_store::{Incident, IncidentId};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};
use flow_app::services::security::{
    self, ListIncidents, ReportIncident, SecurityMetrics, UpdateIncident,
};

/// The security routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_incident))
        .routes(routes!(list_incidents))
        .routes(routes!(get_incident, update_incident))
        .routes(routes!(security_metrics))
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
