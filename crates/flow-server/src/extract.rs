//! Extractors that turn axum's rejections into [`HttpError`]s with stable codes.

use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection, QueryRejection},
        FromRequest, FromRequestParts, Request,
    },
    http::{request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, HttpError};

/// A JSON body. Syntax errors are 400 `invalid_json`; wrong types, missing or unknown
/// fields are 422 `validation_failed`; a body over the limit is 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> HttpError {
    match rejection {
        JsonRejection::JsonDataError(e) => HttpError::validation(serde_detail(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => {
            HttpError::new(ErrorCode::InvalidJson, serde_detail(&e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            HttpError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        }
        other => HttpError::new(ErrorCode::InvalidBody, other.body_text()),
    }
}

/// axum prefixes serde's message with its own; the client only needs serde's part.
fn serde_detail(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, detail)| detail.to_owned())
        .filter(|detail| !detail.is_empty())
        .unwrap_or_else(|| text.to_owned())
}

/// Query parameters; anything that does not parse is 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

/// Longest query string a list route reads: its parameters are ids, names and a search
/// text of at most 100 characters, so anything longer is not a real request.
const MAX_QUERY_BYTES: usize = 2048;

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().map_or(0, str::len) > MAX_QUERY_BYTES {
            return Err(HttpError::new(
                ErrorCode::InvalidQuery,
                format!("the query string must be at most {MAX_QUERY_BYTES} bytes"),
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|rejection: QueryRejection| {
                HttpError::new(
                    ErrorCode::InvalidQuery,
                    serde_detail(&rejection.body_text()),
                )
            })
    }
}

/// A path parameter such as a typed id; a malformed one is 400 `invalid_id`.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|rejection: PathRejection| {
                HttpError::new(ErrorCode::InvalidId, serde_detail(&rejection.body_text()))
            })
    }
}
