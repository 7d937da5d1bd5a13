//! Sign-in and sessions: `/auth/*` (public) and `/users/profile`, `/auth/app-token`.

use axum::{
    extract::{FromRequestParts, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use flow_app::error::{ApiError, ApiResult, ErrorCode};
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

/// The header by which a browser asks for (and proves it may use) the refresh token as
/// an httpOnly cookie. A page of another site cannot send it without a CORS preflight that
/// Flow refuses, and the cookie is SameSite=Strict besides: together they stop cross-site
/// request forgery on the endpoints that read the cookie.
const COOKIE_MODE_HEADER: &str = "x-flow-refresh";
/// The cookie holding the dashboard's refresh token, out of reach of page scripts.
const REFRESH_COOKIE: &str = "flow_refresh";

/// How the client carries its refresh token: in JSON bodies (API clients, the spec's
/// `AuthResponse`), or as an httpOnly cookie (`x-flow-refresh: cookie`, the dashboard).
pub struct RefreshCarrier {
    cookie_mode: bool,
    cookie: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RefreshCarrier {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let cookie_mode = parts
            .headers
            .get(COOKIE_MODE_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cookie"));
        let prefix = format!("{REFRESH_COOKIE}=");
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(prefix.as_str()))
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        Ok(Self {
            cookie_mode,
            cookie,
        })
    }
}

impl RefreshCarrier {
    /// The refresh token a request presents: its body's, or else its cookie, which counts
    /// only together with the header (a form posted from another site has the cookie at
    /// most, never the header).
    fn token(&self, from_body: Option<String>) -> ApiResult<Option<String>> {
        match (from_body, &self.cookie) {
            (Some(token), _) => Ok(Some(token)),
            (None, Some(_)) if !self.cookie_mode => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("the refresh cookie is accepted only with the header {COOKIE_MODE_HEADER}: cookie"),
            )),
            (None, cookie) => Ok(cookie.clone()),
        }
    }

    /// The answer to a sign-in or refresh: in cookie mode the refresh token moves from the
    /// body into the cookie.
    fn answer(&self, mut session: Session, ttl_days: u64) -> Response {
        let token = session.refresh_token.take_if(|_| self.cookie_mode);
        let mut response = Json(session).into_response();
        if let Some(token) = token {
            let cookie = format!(
                "{REFRESH_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                ttl_days * 86_400
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
        response
    }
}

/// Sign in with email and password: an access token (JWT, 15 minutes) and a refresh
/// token. Repeated failures are slowed per account and per address (429 with
/// Retry-After) and raise a SECURITY_INCIDENT. With `x-flow-refresh: cookie` the refresh
/// token is set as an httpOnly, SameSite=Strict cookie instead of returned.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login, security(()),
    responses((status = 200, body = Session), (status = "4XX", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    carrier: RefreshCarrier,
    ApiJson(input): ApiJson<Login>,
) -> HttpResult<Response> {
    let session = users::login(&state.sessions, client, input).await?;
    Ok(carrier.answer(session, state.config.refresh_token_ttl_days))
}

/// Spend a refresh token for a new pair (rotation); `tenantId` switches tenant. A
/// refresh token used twice ends the whole session. The token comes in the body, or as
/// the cookie of a cookie-mode sign-in (then the `x-flow-refresh: cookie` header is
/// required, and the next token is set as the cookie).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh, security(()),
    responses((status = 200, body = Session), (status = "4XX", body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    carrier: RefreshCarrier,
    ApiJson(mut input): ApiJson<Refresh>,
) -> HttpResult<Response> {
    input.refresh_token = carrier.token(input.refresh_token.take())?;
    let session = users::refresh(&state.sessions, input).await?;
    Ok(carrier.answer(session, state.config.refresh_token_ttl_days))
}

/// End the session the refresh token (body or cookie) belongs to; the cookie is cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = Logout, security(()),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    carrier: RefreshCarrier,
    ApiJson(mut input): ApiJson<Logout>,
) -> HttpResult<Response> {
    input.refresh_token = carrier.token(input.refresh_token.take())?;
    users::logout(&state.sessions, input).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if carrier.cookie_mode {
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("flow_refresh=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    Ok(response)
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
