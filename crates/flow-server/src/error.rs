//! The one API error type. Every failure a client sees is `{"error": {code, message, request_id}}`.

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

pub use flow_app::{ApiError, ErrorCode};

/// An [`ApiError`] on its way to an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpError(pub ApiError);

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

/// The result type of handlers.
pub type HttpResult<T> = Result<T, HttpError>;

impl HttpError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }

    /// 422: well-formed JSON whose content breaks a rule.
    pub fn validation(message: impl Into<String>) -> Self {
        Self(ApiError::validation(message))
    }

    /// 404 for a row that is missing or belongs to another tenant (indistinguishable).
    pub fn not_found(what: &str) -> Self {
        Self(ApiError::not_found(what))
    }

    /// 500 without details: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self(ApiError::internal(cause))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        status_of(self.0.code)
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<flow_store::StoreError> for HttpError {
    fn from(error: flow_store::StoreError) -> Self {
        Self(error.into())
    }
}

/// Each code answers with one status: the code says what went wrong, the status only
/// which class of failure it is.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidJson | InvalidBody | InvalidQuery | InvalidId | InvalidLimit | InvalidCursor
        | InvalidSince | InvalidRange | InvalidDay | InvalidEncoding | BadRequest
        | InvalidSourceApp | UnknownCommand => StatusCode::BAD_REQUEST,
        ValidationFailed | InvalidReference | SpeechUnsupported | SpeechNotRecognised => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        PayloadTooLarge | AudioTooLong => StatusCode::PAYLOAD_TOO_LARGE,
        MissingApiKey | InvalidApiKey | InactiveApiKey | InactiveTenant | InvalidAuthorization
        | InvalidToken | InvalidCredentials | InvalidRefreshToken | RefreshTokenReused => {
            StatusCode::UNAUTHORIZED
        }
        AppNotAllowed | TenantMismatch | PermissionDenied | NotAMember | NoTenant | NotAUser => {
            StatusCode::FORBIDDEN
        }
        RateLimited | TooManyAttempts | TooManyConnections | TooManySockets => {
            StatusCode::TOO_MANY_REQUESTS
        }
        NotFound | RouteNotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        InvalidStatusTransition
        | ContactEmailExists
        | TenantExists
        | UserExists
        | ApiKeyExists
        | AlreadyAMember
        | LastAdmin
        | TenantNotEmpty
        | JobNotDead
        | Conflict => StatusCode::CONFLICT,
        UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
        RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        SpeechProviderFailed => StatusCode::BAD_GATEWAY,
        ServiceUnavailable | ServerBusy | LlmNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // The body is written by `render_errors`, which knows the request id.
        let mut response = self.status().into_response();
        if let Some(secs) = self.0.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.0);
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
    let mut rendered = error_response(status, &error, request_id.as_deref());
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

/// The JSON error shape every refusal has: `{ "error": { "code", "message", "request_id" } }`.
pub fn error_response(status: StatusCode, error: &ApiError, request_id: Option<&str>) -> Response {
    let body = json!({
        "error": { "code": error.code.as_str(), "message": error.message, "request_id": request_id }
    });
    (status, Json(body)).into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"))
}

fn fallback_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body is too large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::RequestTimeout, "request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "expected application/json")
        }
        s if s.is_server_error() => (ErrorCode::InternalError, "internal server error"),
        _ => (ErrorCode::BadRequest, "bad request"),
    };
    ApiError::new(code, message)
}
