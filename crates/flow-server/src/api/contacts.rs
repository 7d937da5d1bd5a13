//! `/contacts`.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::{
    processors,
    services::{
        contacts::{self, ContactInput, ListContacts, MergeContacts, MergeResult, UpdateContact},
        Page,
    },
};
use flow_store::{Contact, ContactId};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// The contact routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_contact, list_contacts))
        .routes(routes!(get_contact, update_contact))
        .routes(routes!(sync_contact))
        .routes(routes!(merge_contacts))
        .routes(routes!(email_sync))
}

/// Create a contact; 409 `contact_email_exists` if the email is taken.
#[utoipa::path(post, path = "/contacts", tag = "contacts", request_body = ContactInput,
    responses((status = 201, body = Contact), (status = "4XX", body = ErrorBody)))]
async fn create_contact(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<ContactInput>,
) -> HttpResult<(StatusCode, Json<Contact>)> {
    let contact = contacts::create(&*state.store, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

/// List contacts, newest first; `email` finds one by exact (normalised) email.
#[utoipa::path(get, path = "/contacts", tag = "contacts", params(ListContacts),
    responses((status = 200, body = Page<Contact>), (status = "4XX", body = ErrorBody)))]
async fn list_contacts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListContacts>,
) -> HttpResult<Json<Page<Contact>>> {
    Ok(Json(contacts::list(&*state.store, &caller, query).await?))
}

/// Get one contact.
#[utoipa::path(get, path = "/contacts/{id}", tag = "contacts", params(("id" = ContactId, Path)),
    responses((status = 200, body = Contact), (status = "4XX", body = ErrorBody)))]
async fn get_contact(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<ContactId>,
) -> HttpResult<Json<Contact>> {
    Ok(Json(contacts::get(&*state.store, &caller, id).await?))
}

/// Change a contact's details; `null` clears a field.
#[utoipa::path(patch, path = "/contacts/{id}", tag = "contacts", params(("id" = ContactId, Path)), request_body = UpdateContact,
    responses((status = 200, body = Contact), (status = "4XX", body = ErrorBody)))]
async fn update_contact(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(patch): ApiJson<UpdateContact>,
) -> HttpResult<Json<Contact>> {
    Ok(Json(
        contacts::update(&*state.store, &caller, id, patch).await?,
    ))
}

/// Upsert a contact by email: 201 when created, 200 when an existing one was updated.
#[utoipa::path(post, path = "/contacts/sync", tag = "contacts", request_body = ContactInput,
    responses((status = 200, body = Contact), (status = 201, body = Contact), (status = "4XX", body = ErrorBody)))]
async fn sync_contact(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<ContactInput>,
) -> HttpResult<(StatusCode, Json<Contact>)> {
    let (contact, created) = contacts::sync(&*state.store, &caller, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(contact)))
}

/// Fold another contact into this one: its leads, activities and deals move over and
/// it is deleted. Emits CONTACT_MERGED.
#[utoipa::path(post, path = "/contacts/{id}/merge", tag = "contacts", params(("id" = ContactId, Path)), request_body = MergeContacts,
    responses((status = 200, body = MergeResult), (status = "4XX", body = ErrorBody)))]
async fn merge_contacts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(input): ApiJson<MergeContacts>,
) -> HttpResult<Json<MergeResult>> {
    Ok(Json(
        contacts::merge(&*state.store, &caller, id, input).await?,
    ))
}

/// Sync a batch of email headers (the Inbox AI's call): senders become contacts (upserted by
/// address) and each email an EMAIL activity. Answers 202 with the job.
#[utoipa::path(post, path = "/contacts/email-sync", tag = "contacts", request_body = processors::email_sync::EmailSyncRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn email_sync(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(request): crate::extract::ApiJson<
        processors::email_sync::EmailSyncRequest,
    >,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job =
        processors::email_sync::start(&*state.store, &state.work_signal, &caller, request).await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
