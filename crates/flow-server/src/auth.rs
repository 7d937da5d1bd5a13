//! Credentials at the HTTP edge: headers (and, for sockets, the query and subprotocol)
//! become a [`Credential`], `flow_app::credentials` resolves it, one rate limit applies,
//! and handlers receive the [`Caller`] through the [`Authenticated`] extractor.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use flow_app::{
    auth::{Caller, KeyUsage},
    credentials::{Credential, Credentials, Presented, ResolvedCaller},
};

use crate::{
    error::{ErrorCode, HttpError},
    ratelimit::{RateDecision, RateLimiter},
};

/// What authentication needs of the server state.
#[derive(Clone)]
pub struct AuthState {
    pub credentials: Credentials,
    pub rate_limiter: Arc<RateLimiter>,
    pub key_usage: Arc<KeyUsage>,
    /// Take the client address from `X-Forwarded-For` (behind a reverse proxy).
    pub trust_forwarded_for: bool,
}

/// The authenticated caller of a request, set by [`authenticate`].
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Caller>>()
            .map(|c| Self((**c).clone()))
            .ok_or_else(|| {
                HttpError::internal("Caller extracted on a route without the authenticate layer")
            })
    }
}

/// Authenticates the request's credential, checks app and tenant headers, applies the
/// credential's rate limit and makes a [`Caller`] available to handlers.
pub async fn authenticate(
    State(auth): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let resolved = match presented(request.headers()) {
        Ok(presented) => resolve_headers(&auth, request.headers(), presented).await,
        Err(error) => Err(error),
    };
    let resolved = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return error.into_response(),
    };
    let (caller, decision) = match admit(&auth, resolved) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    request.extensions_mut().insert(Arc::new(caller));
    let mut response = next.run(request).await;
    set_rate_headers(response.headers_mut(), &decision);
    response
}

/// Resolves the credential of a request's headers: `Authorization: Bearer` (a user's or an
/// app's token) or `x-tenant-key`.
pub async fn resolve_headers(
    auth: &AuthState,
    headers: &HeaderMap,
    presented: Presented,
) -> Result<ResolvedCaller, HttpError> {
    once(headers, header::AUTHORIZATION.as_str())?;
    once(headers, "x-tenant-key")?;
    let bearer = bearer_token(headers)?;
    let key = headers
        .get("x-tenant-key")
        .map(|v| v.to_str().unwrap_or_default());
    let credential = match (bearer, key) {
        (Some(token), _) => Credential::Bearer(token),
        (None, Some(key)) => Credential::ApiKey(key),
        (None, None) => {
            return Err(HttpError::new(
                ErrorCode::MissingApiKey,
                "send an API key in x-tenant-key",
            ))
        }
    };
    resolve(auth, credential, presented).await
}

/// Resolves any credential, wherever it arrived.
pub async fn resolve(
    auth: &AuthState,
    credential: Credential<'_>,
    presented: Presented,
) -> Result<ResolvedCaller, HttpError> {
    Ok(auth.credentials.resolve(credential, &presented).await?)
}

/// Takes a token from the credential's bucket and notes a key's use: the one rate limit
/// for requests and sockets alike. A refusal is the finished 429 response.
pub fn admit(
    auth: &AuthState,
    resolved: ResolvedCaller,
) -> Result<(Caller, RateDecision), Box<Response>> {
    let decision = auth
        .rate_limiter
        .check(resolved.rate_subject, resolved.rate_limit);
    if !decision.allowed {
        let mut response = HttpError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests per minute exceeded",
                decision.limit
            ),
        )
        .into_response();
        set_rate_headers(response.headers_mut(), &decision);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.reset_secs.max(1)),
        );
        return Err(Box::new(response));
    }
    if let Some(key_id) = resolved.key_id.filter(|key| auth.key_usage.is_due(*key)) {
        // Last use feeds compliance reports ("keys unused for 90 days"); recording it
        // at most every few minutes keeps it off the request path's write budget.
        let store = auth.credentials.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_api_key(key_id, chrono::Utc::now()).await {
                tracing::warn!(%error, "could not record API key use");
            }
        });
    }
    Ok((resolved.caller, decision))
}

/// What a request says about itself besides its credential.
pub fn presented(headers: &HeaderMap) -> Result<Presented, HttpError> {
    // A header that is not text is passed on as empty, so it fails validation.
    let text = |name: &str| -> Result<Option<String>, HttpError> {
        once(headers, name)?;
        Ok(headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned()))
    };
    Ok(Presented {
        source_app: text("x-source-app")?,
        claimed_tenant: text("x-tenant-id")?,
        request_id: text("x-request-id")?,
    })
}

/// Refuses a header sent more than once: which copy counts would be a guess, and a check
/// of the first copy would not bind the second.
fn once(headers: &HeaderMap, name: &str) -> Result<(), HttpError> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(HttpError::new(
            ErrorCode::BadRequest,
            format!("send the {name} header once"),
        ));
    }
    Ok(())
}

/// Keeps a client's `x-request-id` only if it is a plain identifier of at most 128
/// characters; any other is dropped, so Flow generates one. The id is echoed in
/// responses and stored in the audit trail, where markup or 60,000 characters do harm.
pub async fn sanitize_request_id(mut request: Request) -> Request {
    let valid = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let headers = request.headers_mut();
    let all: Vec<&HeaderValue> = headers.get_all("x-request-id").iter().collect();
    if all.len() != 1 || !valid(all[0]) {
        headers.remove("x-request-id");
    }
    request
}

/// The token of an `Authorization: Bearer` header, if one was sent.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|token| Some(token.trim()))
        .ok_or_else(|| {
            HttpError::new(
                ErrorCode::InvalidAuthorization,
                "Authorization must be 'Bearer <token>'",
            )
        })
}

fn set_rate_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(decision.reset_secs));
}

/// The client's address: the peer, or with `trust_forwarded_for` the last address of
/// `X-Forwarded-For` (the one the reverse proxy appended).
pub struct ClientAddr(pub IpAddr);

impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        // The proxy appends the address it saw to whatever the client sent, so only the
        // last entry is the proxy's word.
        let forwarded = AuthState::from_ref(state)
            .trust_forwarded_for
            .then(|| parts.headers.get("x-forwarded-for"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok());
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(
            forwarded
                .or(peer)
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    }
}
