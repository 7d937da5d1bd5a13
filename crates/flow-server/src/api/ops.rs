//! `/health` and `/metrics`: for load balancers, monitors and people debugging.

use std::time::Instant;

use axum::{
    extract::{FromRequestParts, State},
    http::{header, request::Parts, StatusCode},
    response::IntoResponse,
    Json,
};
use flow_app::auth::Caller;
use flow_store::TenantId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    state::AppState,
};

/// The operational routes (no API key needed).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
}

/// The caller when an `x-tenant-key` was sent (then it must be valid), else nothing.
pub struct OptionalCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for OptionalCaller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key("x-tenant-key") {
            return Ok(Self(None));
        }
        let presented = auth::presented(&parts.headers)?;
        let resolved = auth::resolve_headers(&state.auth, &parts.headers, presented).await?;
        Ok(Self(Some(resolved.caller)))
    }
}

/// Result of one health check.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `ok` or `error`.
    pub status: &'static str,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Overall health.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` when every check passes, else `degraded`.
    pub status: &'static str,
    pub version: &'static str,
    /// The database backend, e.g. `sqlite`.
    pub backend: &'static str,
    pub uptime_seconds: u64,
    pub checks: HealthChecks,
    /// Present when the request carried a valid `x-tenant-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<KeyInfo>,
}

/// The individual checks.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthChecks {
    pub database: Check,
}

/// What a valid key resolved to (the spec's "validate API key" troubleshooting step).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub tenant_id: TenantId,
    pub source_app: String,
    pub permissions: Vec<String>,
}

/// Health of Flow and its dependencies: 200 when healthy, 503 when not. With an
/// `x-tenant-key` it also validates the key (401 when it is not valid).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health), (status = 401, body = ErrorBody)))]
async fn health(
    State(state): State<AppState>,
    OptionalCaller(caller): OptionalCaller,
) -> impl IntoResponse {
    let started = Instant::now();
    let database = match state.store.ping().await {
        Ok(()) => Check {
            status: "ok",
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            error: None,
        },
        Err(e) => Check {
            status: "error",
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            error: Some(e.to_string()),
        },
    };
    let healthy = database.status == "ok";
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        backend: state.store.backend(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        checks: HealthChecks { database },
        auth: caller.map(|c| KeyInfo {
            tenant_id: c.tenant_id,
            source_app: c.source_app,
            permissions: c.permissions.as_slice().to_vec(),
        }),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> HttpResult<impl IntoResponse> {
    if let Some(token) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compared in constant time: the token is a secret.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_bytes(),
            token.as_bytes(),
        )) {
            return Err(HttpError::new(
                ErrorCode::InvalidToken,
                "send the metrics token as Authorization: Bearer <token>",
            ));
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}
