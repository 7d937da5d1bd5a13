//! `/leads`.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, StatusCode},
    Json,
};
use flow_app::{
    processors::import,
    services::{
        leads::{self, AssignLead, ChangeStatus, CreateLead, ListLeads, UpdateLead},
        Page,
    },
};
use flow_store::{Lead, LeadId};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// The lead routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_lead, list_leads))
        .routes(routes!(get_lead, update_lead, delete_lead))
        .routes(routes!(change_status))
        .routes(routes!(assign_lead))
        .routes(routes!(import_leads))
}

/// Create a lead; finds or creates its contact by email and logs a LEAD_CREATED activity.
#[utoipa::path(post, path = "/leads", tag = "leads", request_body = CreateLead,
    responses((status = 201, body = Lead), (status = "4XX", body = ErrorBody)))]
async fn create_lead(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<CreateLead>,
) -> HttpResult<(StatusCode, Json<Lead>)> {
    let lead = leads::create(&*state.store, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(lead)))
}

/// List leads, newest first, with filters and keyset pagination.
#[utoipa::path(get, path = "/leads", tag = "leads", params(ListLeads),
    responses((status = 200, body = Page<Lead>), (status = "4XX", body = ErrorBody)))]
async fn list_leads(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListLeads>,
) -> HttpResult<Json<Page<Lead>>> {
    Ok(Json(leads::list(&*state.store, &caller, query).await?))
}

/// Get one lead.
#[utoipa::path(get, path = "/leads/{id}", tag = "leads", params(("id" = LeadId, Path)),
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)))]
async fn get_lead(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<LeadId>,
) -> HttpResult<Json<Lead>> {
    Ok(Json(leads::get(&*state.store, &caller, id).await?))
}

/// Change a lead's details; `null` clears a field. The status has its own route.
#[utoipa::path(patch, path = "/leads/{id}", tag = "leads", params(("id" = LeadId, Path)), request_body = UpdateLead,
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)))]
async fn update_lead(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<LeadId>,
    ApiJson(patch): ApiJson<UpdateLead>,
) -> HttpResult<Json<Lead>> {
    Ok(Json(
        leads::update(&*state.store, &caller, id, patch).await?,
    ))
}

/// Delete a lead.
#[utoipa::path(delete, path = "/leads/{id}", tag = "leads", params(("id" = LeadId, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_lead(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<LeadId>,
) -> HttpResult<StatusCode> {
    leads::delete(&*state.store, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move a lead through NEW -> CONTACTED -> QUALIFIED -> CONVERTED, or to LOST.
/// Any other transition is 409 `invalid_status_transition`.
#[utoipa::path(patch, path = "/leads/{id}/status", tag = "leads", params(("id" = LeadId, Path)), request_body = ChangeStatus,
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)))]
async fn change_status(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<LeadId>,
    ApiJson(input): ApiJson<ChangeStatus>,
) -> HttpResult<Json<Lead>> {
    Ok(Json(
        leads::change_status(&*state.store, &caller, id, input).await?,
    ))
}

/// Assign a lead to someone, or unassign it with `null`.
#[utoipa::path(post, path = "/leads/{id}/assign", tag = "leads", params(("id" = LeadId, Path)), request_body = AssignLead,
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)))]
async fn assign_lead(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<LeadId>,
    ApiJson(input): ApiJson<AssignLead>,
) -> HttpResult<Json<Lead>> {
    Ok(Json(
        leads::assign(&*state.store, &caller, id, input).await?,
    ))
}

/// An uploaded import file and its format, from `Content-Type`.
struct ImportFile {
    format: import::ImportFormat,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for ImportFile {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let format = match content_type.as_str() {
            "text/csv" => import::ImportFormat::Csv,
            "application/x-ndjson" => import::ImportFormat::Ndjson,
            _ => {
                return Err(HttpError::new(ErrorCode::UnsupportedMediaType, "send text/csv (header firstName,lastName,email,phone,company,source) or application/x-ndjson",
                ))
            }
        };
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::new(ErrorCode::PayloadTooLarge, "the file is too large")
            } else {
                HttpError::new(ErrorCode::InvalidBody, e.body_text())
            }
        })?;
        Ok(Self { format, body })
    }
}

/// Import leads from CSV (`text/csv`, header `firstName,lastName,email,phone,company,source`)
/// or NDJSON (`application/x-ndjson`). Answers 202 with a job; rows are created in batches,
/// with progress and per-row errors in `GET /jobs/{id}`. The same file again is the same job,
/// and rows whose email already has a lead are skipped.
#[utoipa::path(post, path = "/leads/import", tag = "leads",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn import_leads(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    file: ImportFile,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = import::start(
        &*state.store,
        &state.work_signal,
        &caller,
        file.format,
        &file.body,
    )
    .await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
