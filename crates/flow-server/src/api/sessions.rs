//! Sign-in and sessions: `/auth/*` (public) and `/users/profile`, `/auth/app-token`.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::services::users::{
    self, AcceptInvitation, AppToken, Login, Logout, MintAppToken, Profile, Refresh, Session,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authenticated, ClientAddr},
    error::{ErrorBody, HttpResult},
    extract::ApiJson,
    state::AppState,
};

/// Routes that need no credentials: they hand them out.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(accept_invitation))
}

/// Routes behind the usual authentication.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(profile))
        .routes(routes!(app_token))
}

/// Sign in with email and password: an access token (JWT, 15 minutes) and a refresh
/// token. Repeated failures are slowed per account and per address (429 with
/// Retry-After) and raise a SECURITY_INCIDENT.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login, security(()),
    responses((status = 200, body = Session), (status = "4XX", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(input): ApiJson<Login>,
) -> HttpResult<Json<Session>> {
    Ok(Json(users::login(&state.sessions, client, input).await?))
}

/// Spend a refresh token for a new pair (rotation); `tenantId` switches tenant. A
/// refresh token used twice ends the whole session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh, security(()),
    responses((status = 200, body = Session), (status = "4XX", body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<Refresh>,
) -> HttpResult<Json<Session>> {
    Ok(Json(users::refresh(&state.sessions, input).await?))
}

/// End the session the refresh token belongs to.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = Logout, security(()),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<Logout>,
) -> HttpResult<StatusCode> {
    users::logout(&state.sessions, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation to a tenant with its token, and be signed in to that tenant. An
/// email with an account gives the account's password; a new one sets it, with a name.
#[utoipa::path(post, path = "/auth/invitations/accept", tag = "auth",
    request_body = AcceptInvitation, security(()),
    responses((status = 200, body = Session), (status = "4XX", body = ErrorBody)))]
async fn accept_invitation(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(input): ApiJson<AcceptInvitation>,
) -> HttpResult<Json<Session>> {
    Ok(Json(
        users::accept_invitation(&state.sessions, client, input).await?,
    ))
}

/// The signed-in user, the current tenant and role, and every tenant of the user.
#[utoipa::path(get, path = "/users/profile", tag = "auth",
    responses((status = 200, body = Profile), (status = "4XX", body = ErrorBody)))]
async fn profile(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<Profile>> {
    Ok(Json(users::profile(&state.sessions, &caller).await?))
}

/// Mint a cross-app token (JWT, at most one hour) for one of the key's apps with a
/// subset of its permissions. Revoking the key ends its tokens.
#[utoipa::path(post, path = "/auth/app-token", tag = "auth", request_body = MintAppToken,
    responses((status = 201, body = AppToken), (status = "4XX", body = ErrorBody)))]
async fn app_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<MintAppToken>,
) -> HttpResult<(StatusCode, Json<AppToken>)> {
    Ok((
        StatusCode::CREATED,
        Json(users::mint_app_token(&state.sessions, &caller, input).await?),
    ))
}
