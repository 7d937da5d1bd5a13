//! The one API error type. Every failure a client sees is `{"error": {code, message, request_id}}`.

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use flow_store::{Constraint, StoreError};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// An error answered to a client: a status, a stable machine-readable code and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (429, 503).
    pub retry_after_secs: Option<u64>,
}

/// The JSON shape of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `validation_failed`, `not_found`, `rate_limited`.
    code: String,
    /// Human-readable explanation.
    message: String,
    /// The request's `x-request-id`, for finding it in the logs.
    request_id: Option<String>,
}

/// The result type of handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The same error, telling the client when to try again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// 400 with a code naming what was wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: well-formed JSON whose content breaks a rule.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    /// 404 for a row that is missing or belongs to another tenant (indistinguishable).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409 for a request that conflicts with the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 500 without details: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }

    /// Turns a store error about `what` into the answer a client should see.
    pub fn from_store(what: &str, error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found(what),
            other => other.into(),
        }
    }
}

/// The one place where constraint violations become 409/422 answers.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Constraint(Constraint::ContactEmailUnique) => Self::conflict(
                "contact_email_exists",
                "a contact with this email already exists",
            ),
            StoreError::Constraint(Constraint::TenantSlugUnique) => {
                Self::conflict("tenant_exists", "a tenant with this slug already exists")
            }
            StoreError::Constraint(Constraint::UserEmailUnique) => {
                Self::conflict("user_exists", "an account with this email already exists")
            }
            StoreError::Constraint(Constraint::ApiKeyUnique) => {
                Self::conflict("api_key_exists", "this API key already exists")
            }
            StoreError::Constraint(Constraint::ForeignKey) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_reference",
                "a referenced record does not exist",
            ),
            StoreError::Constraint(Constraint::Other(name)) => Self::conflict(
                "conflict",
                format!("conflicts with an existing record ({name})"),
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "the database is unavailable, try again shortly",
                )
            }
            StoreError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written by `render_errors`, which knows the request id.
        let mut response = self.status.into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Gives every error response the JSON error shape with the request id, including
/// errors raised by layers and the router itself (404, 405, 413, timeouts, panics).
pub async fn render_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None if is_json(&response) => return response,
        None => fallback_error(status),
    };
    let body = json!({
        "error": { "code": error.code, "message": error.message, "request_id": request_id }
    });
    let mut rendered = (status, Json(body)).into_response();
    for name in [
        header::RETRY_AFTER,
        header::ALLOW,
        header::HeaderName::from_static("ratelimit-limit"),
        header::HeaderName::from_static("ratelimit-remaining"),
        header::HeaderName::from_static("ratelimit-reset"),
        header::WWW_AUTHENTICATE,
    ] {
        if let Some(value) = response.headers().get(&name) {
            rendered.headers_mut().insert(name, value.clone());
        }
    }
    rendered
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"))
}

fn fallback_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "expected application/json")
        }
        s if s.is_server_error() => ("internal_error", "internal server error"),
        _ => ("bad_request", "bad request"),
    };
    ApiError::new(status, code, message)
}
