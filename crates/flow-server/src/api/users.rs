//! A tenant's admin pages: members (`/users`) and API keys (`/api-keys`).

use axum::{extract::State, http::StatusCode, Json};
use flow_app::services::{
    keys::CreateKey,
    keys::{self, CreatedKey},
    users::{self, AddMember, UpdateMember},
};
use flow_store::{ApiKey, ApiKeyId, Invitation, Member, UserId};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    extract::{ApiJson, ApiPath},
    state::AppState,
};

/// The member and key routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// A whole (short) list.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// The tenant's members with their roles (needs `read:users`).
#[utoipa::path(get, path = "/users", tag = "admin",
    responses((status = 200, body = List<Member>), (status = "4XX", body = ErrorBody)))]
async fn list_members(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<List<Member>>> {
    let data = users::list_members(&*state.store, &caller).await?;
    Ok(Json(List { data }))
}

/// Invite a person to the tenant (admins). The answer is the same whether or not the email
/// has an account; the person joins by accepting with the invitation's token
/// (`POST /auth/invitations/accept`), which is sent to them, never shown here.
#[utoipa::path(post, path = "/users", tag = "admin", request_body = AddMember,
    responses((status = 202, body = Invitation), (status = "4XX", body = ErrorBody)))]
async fn add_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<AddMember>,
) -> HttpResult<(StatusCode, Json<Invitation>)> {
    let (invitation, _token) = users::invite(&*state.store, &caller, input).await?;
    Ok((StatusCode::ACCEPTED, Json(invitation)))
}

/// Change a member's role (admins; a tenant keeps at least one admin).
#[utoipa::path(patch, path = "/users/{id}", tag = "admin", params(("id" = UserId, Path)),
    request_body = UpdateMember,
    responses((status = 200, body = Member), (status = "4XX", body = ErrorBody)))]
async fn update_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(input): ApiJson<UpdateMember>,
) -> HttpResult<Json<Member>> {
    Ok(Json(
        users::update_member(&*state.store, &caller, id, input).await?,
    ))
}

/// Remove a member from the tenant (admins); the account itself stays.
#[utoipa::path(delete, path = "/users/{id}", tag = "admin", params(("id" = UserId, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<UserId>,
) -> HttpResult<StatusCode> {
    users::remove_member(&*state.store, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's API keys (admins; secrets are never shown again).
#[utoipa::path(get, path = "/api-keys", tag = "admin",
    responses((status = 200, body = List<ApiKey>), (status = "4XX", body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<List<ApiKey>>> {
    let data = keys::list(&*state.store, &caller).await?;
    Ok(Json(List { data }))
}

/// Create an API key (admins); the answer carries the secret, shown this once.
#[utoipa::path(post, path = "/api-keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<CreateKey>,
) -> HttpResult<(StatusCode, Json<CreatedKey>)> {
    let limit = state.config.default_rate_limit_per_minute;
    let created = keys::create_from_request(&*state.store, &caller, limit, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke an API key (admins): requests and tokens made with it stop working.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "admin", params(("id" = ApiKeyId, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> HttpResult<StatusCode> {
    keys::revoke(&*state.store, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
