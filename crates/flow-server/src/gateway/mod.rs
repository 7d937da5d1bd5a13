//! The real-time gateway: `GET /events` upgrades to a WebSocket that pushes the tenant's
//! events, routed by rooms, with gap-free resume from the durable event log.

pub mod hub;
pub mod protocol;
mod socket;
pub mod token;
mod voice_session;

use std::time::Duration;

use axum::{
    extract::{
        rejection::QueryRejection,
        ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade},
        FromRequestParts, Query, State,
    },
    http::{request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{resolve_caller, Caller, Permissions},
    error::{ApiError, ApiResult, ErrorBody},
    jwt,
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

/// The caller of a WebSocket connection, from whichever credential it brought.
/// The caller of a WebSocket connection and when its credential expires.
struct SocketCaller(Caller, Option<DateTime<Utc>>);

impl FromRequestParts<AppState> for SocketCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<ConnectParams>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text()))?;
        let caller: (Caller, Option<DateTime<Utc>>) = match &params.token {
            Some(token) if !jwt::looks_like_jwt(token) => {
                (caller_from_token(state, token).await?, None)
            }
            _ => {
                let mut headers = parts.headers.clone();
                if let Some(access_token) = &params.token {
                    // A user's access token (the dashboard) or an app token.
                    let bearer =
                        HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| {
                            ApiError::unauthorized("invalid_token", "token is not valid")
                        })?;
                    headers.insert(axum::http::header::AUTHORIZATION, bearer);
                } else if !headers.contains_key("x-tenant-key") {
                    if let Some(key) = key_from_protocols(&parts.headers).or(params.key.clone()) {
                        let key = HeaderValue::from_str(&key).map_err(|_| {
                            ApiError::unauthorized("invalid_api_key", "API key is not valid")
                        })?;
                        headers.insert("x-tenant-key", key);
                    }
                }
                if let (false, Some(app)) = (headers.contains_key("x-source-app"), &params.app) {
                    let app = HeaderValue::from_str(app).map_err(|_| {
                        ApiError::bad_request("invalid_source_app", "app is not a valid app name")
                    })?;
                    headers.insert("x-source-app", app);
                }
                let resolved = resolve_caller(state, &headers).await?;
                let decision = state
                    .rate_limiter
                    .check(resolved.rate_subject, resolved.rate_limit);
                if !decision.allowed {
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "rate limit exceeded",
                    ));
                }
                (resolved.caller, resolved.expires_at)
            }
        };
        Ok(Self(caller.0, caller.1))
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

async fn caller_from_token(state: &AppState, token: &str) -> ApiResult<Caller> {
    let invalid = || ApiError::unauthorized("invalid_token", "token is not valid or has expired");
    let claims = token::verify(&state.secret, token, Utc::now()).ok_or_else(invalid)?;
    let found = state
        .store
        .find_api_key_by_id(claims.key_id)
        .await?
        .ok_or_else(invalid)?;
    if !found.key.active {
        return Err(ApiError::unauthorized(
            "inactive_api_key",
            "API key has been revoked",
        ));
    }
    if !found.tenant_active {
        return Err(ApiError::unauthorized(
            "inactive_tenant",
            "tenant is not active",
        ));
    }
    Ok(Caller {
        tenant_id: found.key.tenant_id,
        actor: flow_store::Actor {
            kind: flow_store::ActorKind::ApiKey,
            id: found.key.id.to_string(),
        },
        permissions: Permissions::new(found.key.permissions),
        source_app: claims.app,
        request_id: None,
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
) -> ApiResult<Response> {
    caller.require("read", "events")?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!(
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
        .on_upgrade(move |socket| socket::serve(socket, state, caller, expires_at)))
}

/// A connection token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocketToken {
    /// Pass as `/events?token=...`; valid once per connection attempt until `expiresAt`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Mint a short-lived token for opening `/events` from a browser, which cannot send headers
/// on a WebSocket. The token carries this key's tenant and the calling app.
#[utoipa::path(post, path = "/events/token", tag = "events",
    responses((status = 201, body = SocketToken), (status = "4XX", body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<SocketToken>)> {
    caller.require("read", "events")?;
    // A user's access token (or an app token) is itself accepted as `token=`; minting a
    // key token from an app token would hand out the key's full permissions.
    let key_id = (caller.actor.kind == flow_store::ActorKind::ApiKey)
        .then(|| caller.actor.id.parse().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::forbidden(
                "permission_denied",
                "only API keys mint connection tokens; pass an access token as token=",
            )
        })?;
    let expires_at = Utc::now() + TOKEN_TTL;
    let token = token::mint(&state.secret, key_id, &caller.source_app, expires_at);
    Ok((StatusCode::CREATED, Json(SocketToken { token, expires_at })))
}
