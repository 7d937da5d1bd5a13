//! The real-time gateway: `GET /events` upgrades to a WebSocket that pushes the tenant's
//! events, routed by rooms, with gap-free resume from the durable event log.

pub mod audio_budget;
pub mod hub;
pub mod open_sockets;
pub mod protocol;
mod socket;
mod voice_session;

use std::time::Duration;

use axum::{
    extract::{
        rejection::QueryRejection,
        ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade},
        FromRequestParts, Query, State,
    },
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use flow_app::{auth::Caller, credentials::Credential, jwt, socket_token};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{self, Authenticated},
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    state::AppState,
};

/// How long a connection token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// The subprotocol Flow speaks; browsers offer it together with `flow-key.<key>`.
const PROTOCOL: &str = "flow.v1";
/// Prefix of the subprotocol entry that carries an API key.
const KEY_PROTOCOL_PREFIX: &str = "flow-key.";

/// The WebSocket route, which authenticates itself (headers, subprotocol, token or query).
pub fn socket_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connect))
        .routes(routes!(voice_session::connect))
}

/// The token route, behind the usual API-key authentication.
pub fn token_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token))
}

/// Query parameters a browser can use instead of headers.
#[derive(Debug, Default, Deserialize)]
struct ConnectParams {
    /// A short-lived token from `POST /events/token`.
    token: Option<String>,
    /// An API key (prefer a token: URLs end up in logs).
    key: Option<String>,
    /// The connecting app, when `x-source-app` cannot be sent.
    app: Option<String>,
}

/// The caller of a WebSocket connection and when its credential expires, from whichever
/// credential it brought, resolved and rate limited like any request's.
struct SocketCaller(Caller, Option<DateTime<Utc>>);

impl FromRequestParts<AppState> for SocketCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let refuse = |error: HttpError| error.into_response();
        let Query(params) = Query::<ConnectParams>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| {
                refuse(HttpError::new(ErrorCode::InvalidQuery, e.body_text()))
            })?;
        let mut presented = auth::presented(&parts.headers).map_err(refuse)?;
        if presented.source_app.is_none() {
            presented.source_app = params.app.clone();
        }
        let sent_in_headers = parts.headers.contains_key("x-tenant-key")
            || parts.headers.contains_key(header::AUTHORIZATION);
        let resolved = match (params.token.as_deref(), sent_in_headers) {
            // A user's access token (the dashboard) or an app token.
            (Some(token), _) if jwt::looks_like_jwt(token) => {
                auth::resolve(&state.auth, Credential::Bearer(token), presented).await
            }
            (Some(token), _) => {
                auth::resolve(&state.auth, Credential::SocketToken(token), presented).await
            }
            (None, true) => auth::resolve_headers(&state.auth, &parts.headers, presented).await,
            (None, false) => match key_from_protocols(&parts.headers).or(params.key) {
                Some(key) => auth::resolve(&state.auth, Credential::ApiKey(&key), presented).await,
                None => Err(HttpError::new(
                    ErrorCode::MissingApiKey,
                    "send an API key in x-tenant-key, the flow-key.<key> subprotocol or key=, or a token=",
                )),
            },
        }
        .map_err(refuse)?;
        let expires_at = resolved.expires_at;
        let (caller, _) = auth::admit(&state.auth, resolved).map_err(|refused| *refused)?;
        Ok(Self(caller, expires_at))
    }
}

/// A timer that fires when a socket's credential expires. Without an expiry it is set a
/// year out; callers also guard its select arm with `expires_at.is_some()`.
pub(super) fn credential_expiry(expires_at: Option<DateTime<Utc>>) -> tokio::time::Sleep {
    let left = match expires_at {
        Some(at) => (at - Utc::now()).to_std().unwrap_or_default(),
        None => Duration::from_secs(86_400 * 365),
    };
    tokio::time::sleep(left)
}

fn key_from_protocols(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(KEY_PROTOCOL_PREFIX)
                .map(str::to_owned)
        })
}

/// Open the real-time event stream (WebSocket; protocol in docs/PROTOCOL.md).
///
/// Credentials: `x-tenant-key` header, or for browsers a `token` from `POST /events/token`,
/// the subprotocol `flow-key.<key>` beside `flow.v1`, or `key=`; the app from
/// `x-source-app` or `app=`. Without a WebSocket handshake the answer explains how to connect.
#[utoipa::path(get, path = "/events", tag = "events",
    params(
        ("token" = Option<String>, Query, description = "Connection token from POST /events/token"),
        ("key" = Option<String>, Query, description = "API key, when no header can be sent"),
        ("app" = Option<String>, Query, description = "Connecting app, when x-source-app cannot be sent"),
    ),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 426, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
async fn connect(
    State(state): State<AppState>,
    SocketCaller(caller, expires_at): SocketCaller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> HttpResult<Response> {
    caller.require("read", "events")?;
    let place = state.sockets.admit(&caller)?;
    let upgrade = upgrade.map_err(|rejection| {
        HttpError::new(ErrorCode::UpgradeRequired, format!(
                "credentials accepted for tenant {} (app {}), but this is not a WebSocket handshake: {}. \
                 Connect with a WebSocket client, e.g. wscat -c ws://HOST:PORT/events -H \"x-tenant-key: KEY\"",
                caller.tenant_id,
                caller.source_app,
                rejection.body_text()
            ),
        )
    })?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            socket::serve(socket, state, caller, expires_at).await;
            drop(place);
        }))
}

/// A connection token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocketToken {
    /// Pass as `/events?token=...`; opens one socket, until `expiresAt`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Mint a short-lived token for opening `/events` from a browser, which cannot send headers
/// on a WebSocket. The token carries this key's tenant and the calling app.
#[utoipa::path(post, path = "/events/token", tag = "events",
    responses((status = 201, body = SocketToken), (status = "4XX", body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<(StatusCode, Json<SocketToken>)> {
    caller.require("read", "events")?;
    // A user's access token (or an app token) is itself accepted as `token=`; minting a
    // key token from an app token would hand out the key's full permissions.
    let key_id = (caller.actor.kind == flow_store::ActorKind::ApiKey)
        .then(|| caller.actor.id.parse().ok())
        .flatten()
        .ok_or_else(|| {
            HttpError::new(
                ErrorCode::PermissionDenied,
                "only API keys mint connection tokens; pass an access token as token=",
            )
        })?;
    let expires_at = Utc::now() + TOKEN_TTL;
    let token = socket_token::mint(&state.secret, key_id, &caller.source_app, expires_at);
    Ok((StatusCode::CREATED, Json(SocketToken { token, expires_at })))
}
