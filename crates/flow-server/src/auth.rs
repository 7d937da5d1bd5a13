//! API keys, permissions and the request's tenant context.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{request::Parts, HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use flow_store::{Actor, ActorKind, ApiKeyId, Role, StoreResult, TenantId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use uuid::Uuid;

use crate::{
    error::ApiError,
    jwt::{self, Subject},
    ratelimit::RateDecision,
    state::AppState,
};

/// The app name assumed when a request carries no `x-source-app`.
pub const DEFAULT_SOURCE_APP: &str = "api";

/// A freshly generated API key: the secret (shown once) and what is stored of it.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// Makes a new high-entropy key (256 random bits).
pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("flow_sk_{}", hex::encode(bytes));
    GeneratedKey {
        prefix: key_prefix(&secret),
        hash: hash_key(&secret),
        secret,
    }
}

/// What is stored to recognise a key in a list without revealing it.
pub fn key_prefix(secret: &str) -> String {
    secret.chars().take(12).collect()
}

/// Keys carry 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A set of `operation:resource` grants (`read:leads`, `read:*`, `*`).
#[derive(Clone, Debug)]
pub struct Permissions(Vec<String>);

impl Permissions {
    /// Wraps stored grants.
    pub fn new(grants: Vec<String>) -> Self {
        Self(grants)
    }

    /// The spec's `checkPermission`: exact grant, operation wildcard, or `*`.
    pub fn allows(&self, operation: &str, resource: &str) -> bool {
        self.0.iter().any(|grant| {
            grant == "*"
                || grant
                    .split_once(':')
                    .is_some_and(|(op, res)| op == operation && (res == "*" || res == resource))
        })
    }

    /// Whether every request `grant` allows is also allowed by these grants (for
    /// handing on a subset of one's permissions).
    pub fn covers(&self, grant: &str) -> bool {
        match grant.split_once(':') {
            _ if self.0.iter().any(|g| g == "*") => true,
            Some((operation, "*")) => self.0.iter().any(|g| *g == format!("{operation}:*")),
            Some((operation, resource)) => self.allows(operation, resource),
            None => false,
        }
    }

    /// The grants, as stored.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Checks that a grant is well-formed: `*` or `operation:resource` of lowercase words.
pub fn valid_grant(grant: &str) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-')
    };
    grant == "*"
        || grant
            .split_once(':')
            .is_some_and(|(op, res)| word(op) && (res == "*" || word(res)))
}

/// Who is calling, for which tenant, from which app: set by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant_id: TenantId,
    /// The audit trail's "who": an API key, a user, or Flow itself.
    pub actor: Actor,
    pub permissions: Permissions,
    pub source_app: String,
    pub request_id: Option<String>,
}

impl Caller {
    /// 403 unless the caller holds `operation:resource`.
    pub fn require(&self, operation: &str, resource: &str) -> Result<(), ApiError> {
        if self.permissions.allows(operation, resource) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "permission_denied",
                format!("the caller lacks the permission {operation}:{resource}"),
            ))
        }
    }

    /// Flow acting on its own behalf in a tenant (provisioning, background work).
    pub fn system(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: Actor {
                kind: ActorKind::System,
                id: "flow".into(),
            },
            permissions: Permissions::new(vec!["*".into()]),
            source_app: "flow".into(),
            request_id: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Caller>>()
            .map(|c| (**c).clone())
            .ok_or_else(|| {
                ApiError::internal("Caller extracted on a route without the authenticate layer")
            })
    }
}

/// Authenticates the request's API key, checks app and tenant headers, applies the
/// key's rate limit and makes a [`Caller`] available to handlers.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match resolve_caller(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let decision = state
        .rate_limiter
        .check(caller.rate_subject, caller.rate_limit);
    if !decision.allowed {
        let mut response = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "rate limit of {} requests per minute exceeded",
                decision.limit
            ),
        )
        .into_response();
        set_rate_headers(response.headers_mut(), &decision);
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(decision.reset_secs.max(1)),
        );
        return response;
    }
    if let Some(key_id) = caller.key_id.filter(|key| state.key_usage.is_due(*key)) {
        // Last use feeds compliance reports ("keys unused for 90 days"); recording it
        // at most every few minutes keeps it off the request path's write budget.
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_api_key(key_id, chrono::Utc::now()).await {
                tracing::warn!(%error, "could not record API key use");
            }
        });
    }
    request.extensions_mut().insert(Arc::new(caller.caller));
    let mut response = next.run(request).await;
    set_rate_headers(response.headers_mut(), &decision);
    response
}

/// The client's address: the peer, or with `trust_forwarded_for` the first address of
/// `X-Forwarded-For` (set by the reverse proxy).
pub struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The proxy appends the address it saw to whatever the client sent, so only the
        // last entry is the proxy's word.
        let forwarded = state
            .config
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
        Ok(Self(forwarded.or(peer).unwrap_or(std::net::IpAddr::V4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ))))
    }
}

/// Remembers when this process last recorded each key's use.
#[derive(Default)]
pub struct KeyUsage {
    last_recorded: std::sync::Mutex<std::collections::HashMap<ApiKeyId, std::time::Instant>>,
}

impl KeyUsage {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

    /// True (and noted) when `key`'s use has not been recorded within the interval.
    pub fn is_due(&self, key: ApiKeyId) -> bool {
        let now = std::time::Instant::now();
        let mut last = self.last_recorded.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < Self::INTERVAL => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

fn set_rate_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(decision.reset_secs));
}

/// Whether the credential behind `caller` still holds with the rights it had: its API key
/// (presented directly, or behind an app or connection token) active and still granting
/// them, or its user still a member of the tenant in a role that grants them, and the
/// tenant active. Sockets outlive the request that opened them, so they ask this at every
/// heartbeat; a demoted user's socket closes and reconnects with the new role.
pub async fn credential_still_valid(state: &AppState, caller: &Caller) -> StoreResult<bool> {
    let still_granted = |grants: Vec<String>| {
        let now = Permissions::new(grants);
        caller.permissions.as_slice().iter().all(|g| now.covers(g))
    };
    match caller.actor.kind {
        ActorKind::ApiKey | ActorKind::AppToken => {
            let Ok(id) = caller.actor.id.parse::<ApiKeyId>() else {
                return Ok(false);
            };
            Ok(state
                .store
                .find_api_key_by_id(id)
                .await?
                .is_some_and(|found| {
                    found.key.active
                        && found.tenant_active
                        && found.key.tenant_id == caller.tenant_id
                        && still_granted(found.key.permissions)
                }))
        }
        ActorKind::User => {
            let Ok(id) = caller.actor.id.parse::<UserId>() else {
                return Ok(false);
            };
            Ok(state
                .store
                .user_memberships(id)
                .await?
                .into_iter()
                .any(|m| {
                    m.tenant.id == caller.tenant_id
                        && m.tenant.active
                        && still_granted(role_permissions(m.role))
                }))
        }
        ActorKind::System => Ok(true),
    }
}

/// A caller plus the rate limit that applies to it.
pub struct ResolvedCaller {
    pub caller: Caller,
    /// The bucket the rate limit draws from: the API key, or the signed-in user.
    pub rate_subject: Uuid,
    pub rate_limit: u32,
    /// The API key presented directly, whose use is recorded.
    pub key_id: Option<ApiKeyId>,
    /// When a token credential stops being valid (a socket opened with it closes then).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Resolves the credentials (`x-tenant-key`, or `Authorization: Bearer` with a user's or
/// an app's token), `x-source-app` and `x-tenant-id` headers into a caller.
pub async fn resolve_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<ResolvedCaller, ApiError> {
    if let Some(token) = bearer_token(headers)? {
        return resolve_bearer(state, headers, token).await;
    }
    let secret = headers
        .get("x-tenant-key")
        .ok_or_else(|| {
            ApiError::unauthorized("missing_api_key", "send an API key in x-tenant-key")
        })?
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_api_key", "API key is not valid"))?;
    let hash = hash_key(secret);
    let found = state
        .store
        .find_api_key(&hash)
        .await?
        // The lookup is by hash, so timing reveals nothing about the secret; compare in
        // constant time anyway so no future lookup path can leak a prefix match.
        .filter(|found| bool::from(found.key_hash.ct_eq(&hash)))
        .ok_or_else(|| ApiError::unauthorized("invalid_api_key", "API key is not valid"))?;
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
    let source_app = source_app(headers)?.unwrap_or_else(|| DEFAULT_SOURCE_APP.to_owned());
    require_app_allowed(&found.key.allowed_apps, &source_app)?;
    check_claimed_tenant(headers, found.key.tenant_id)?;
    Ok(ResolvedCaller {
        rate_limit: found.key.rate_limit_per_minute,
        rate_subject: found.key.id.0,
        key_id: Some(found.key.id),
        expires_at: None,
        caller: Caller {
            tenant_id: found.key.tenant_id,
            actor: Actor {
                kind: ActorKind::ApiKey,
                id: found.key.id.to_string(),
            },
            permissions: Permissions::new(found.key.permissions),
            source_app,
            request_id: request_id(headers),
        },
    })
}

/// The token of an `Authorization: Bearer` header, if one was sent.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
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
            ApiError::unauthorized(
                "invalid_authorization",
                "Authorization must be 'Bearer <token>'",
            )
        })
}

/// A user's access token or an app's cross-app token.
async fn resolve_bearer(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<ResolvedCaller, ApiError> {
    let claims = jwt::verify(&state.secret, token).ok_or_else(|| {
        ApiError::unauthorized("invalid_token", "token is not valid or has expired")
    })?;
    check_claimed_tenant(headers, claims.tenant_id)?;
    let sent_app = source_app(headers)?;
    let rate_subject = match &claims.subject {
        Subject::User { sub, .. } => sub.0,
        Subject::App { key, .. } => key.0,
    };
    let expires_at = claims.expires_at();
    let mut permissions = claims.permissions;
    let (actor, source_app, rate_limit) = match claims.subject {
        Subject::User { sub, .. } => {
            // The role is read again on every request: a member who was removed or
            // demoted, or whose tenant was suspended, loses access at once, not when the
            // token runs out.
            let membership = state
                .store
                .user_memberships(sub)
                .await?
                .into_iter()
                .find(|m| m.tenant.id == claims.tenant_id)
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "invalid_token",
                        "you are no longer a member of this tenant",
                    )
                })?;
            if !membership.tenant.active {
                return Err(ApiError::unauthorized(
                    "inactive_tenant",
                    "tenant is not active",
                ));
            }
            permissions = role_permissions(membership.role);
            (
                Actor {
                    kind: ActorKind::User,
                    id: sub.to_string(),
                },
                sent_app.unwrap_or_else(|| DEFAULT_SOURCE_APP.to_owned()),
                state.config.default_rate_limit_per_minute,
            )
        }
        Subject::App { key, app } => {
            // The key is checked on every use so revoking it ends its tokens at once.
            let found = state
                .store
                .find_api_key_by_id(key)
                .await?
                .filter(|found| found.key.active && found.tenant_active)
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "invalid_token",
                        "the API key behind this token was revoked",
                    )
                })?;
            if sent_app.as_ref().is_some_and(|sent| *sent != app) {
                return Err(ApiError::forbidden(
                    "app_not_allowed",
                    format!("this token was issued to the app '{app}'"),
                ));
            }
            let actor = Actor {
                kind: ActorKind::AppToken,
                id: key.to_string(),
            };
            (actor, app, found.key.rate_limit_per_minute)
        }
    };
    Ok(ResolvedCaller {
        caller: Caller {
            tenant_id: claims.tenant_id,
            actor,
            permissions: Permissions::new(permissions),
            source_app,
            request_id: request_id(headers),
        },
        rate_subject,
        rate_limit,
        key_id: None,
        expires_at: Some(expires_at),
    })
}

/// `x-source-app`, validated; `None` when absent.
fn source_app(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("x-source-app") else {
        return Ok(None);
    };
    let app = value.to_str().unwrap_or_default();
    if !valid_app_name(app) {
        return Err(ApiError::bad_request(
            "invalid_source_app",
            "x-source-app must be 1-64 characters of a-z, 0-9 and -",
        ));
    }
    Ok(Some(app.to_owned()))
}

/// 403 unless `app` is among a key's allowed apps (`*` allows any).
pub fn require_app_allowed(allowed_apps: &[String], app: &str) -> Result<(), ApiError> {
    if allowed_apps
        .iter()
        .any(|allowed| allowed == "*" || allowed == app)
    {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "app_not_allowed",
            format!("this key may not be used by the app '{app}'"),
        ))
    }
}

/// An `x-tenant-id` header, when sent, must name the credential's tenant.
fn check_claimed_tenant(headers: &HeaderMap, tenant: TenantId) -> Result<(), ApiError> {
    if let Some(claimed) = headers.get("x-tenant-id") {
        let matches = claimed
            .to_str()
            .ok()
            .and_then(|s| s.parse::<TenantId>().ok())
            .is_some_and(|id| id == tenant);
        if !matches {
            return Err(ApiError::forbidden(
                "tenant_mismatch",
                "x-tenant-id does not match the credential's tenant",
            ));
        }
    }
    Ok(())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The permissions a role grants, as the same strings API keys carry, so one check
/// serves both. Only admins hold `admin:*` (users, keys, queues, backups).
pub fn role_permissions(role: Role) -> Vec<String> {
    let grants: &[&str] = match role {
        Role::Admin => &["*"],
        Role::User => &["read:*", "write:*", "execute:*"],
        Role::Viewer => &["read:*"],
    };
    grants.iter().map(|g| (*g).to_owned()).collect()
}

/// App names are short lowercase slugs such as `flow-web` or `voice-agent`.
pub fn valid_app_name(app: &str) -> bool {
    (1..=64).contains(&app.len())
        && app
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_matching_follows_the_spec() {
        let p = Permissions::new(vec!["read:leads".into(), "write:*".into()]);
        assert!(p.allows("read", "leads"));
        assert!(!p.allows("read", "contacts"));
        assert!(p.allows("write", "contacts"));
        assert!(!p.allows("execute", "voice"));
        assert!(Permissions::new(vec!["*".into()]).allows("execute", "voice"));
        assert!(!Permissions::new(vec![]).allows("read", "leads"));
        assert!(!Permissions::new(vec!["read:leadsx".into()]).allows("read", "leads"));
    }

    #[test]
    fn a_subset_is_covered_and_nothing_wider() {
        let p = Permissions::new(vec!["read:*".into(), "write:leads".into()]);
        assert!(p.covers("read:*") && p.covers("read:contacts") && p.covers("write:leads"));
        assert!(!p.covers("write:*") && !p.covers("write:contacts") && !p.covers("*"));
        assert!(Permissions::new(vec!["*".into()]).covers("*"));
    }

    #[test]
    fn grants_are_validated() {
        for ok in ["*", "read:leads", "read:*", "execute:voice", "sync:emails"] {
            assert!(valid_grant(ok), "{ok}");
        }
        for bad in [
            "",
            "read",
            "read:",
            ":leads",
            "READ:leads",
            "read:leads:x",
            "r d:x",
        ] {
            assert!(!valid_grant(bad), "{bad}");
        }
    }

    #[test]
    fn generated_keys_are_unique_and_hash_to_what_is_stored() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), "flow_sk_".len() + 64);
        assert_eq!(hash_key(&a.secret), a.hash);
        assert!(a.secret.starts_with(&a.prefix));
    }
}
