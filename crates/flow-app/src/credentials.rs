//! One way to turn a credential into a [`Caller`]: API keys and bearer tokens (a user's
//! access token or an app's cross-app token), with the same checks wherever they arrive.

use std::sync::Arc;

use flow_store::{Actor, ActorKind, ApiKey, ApiKeyId, ApiKeyWithTenant, Store, TenantId};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{
    auth::{
        hash_key, require_app_allowed, role_permissions, valid_app_name, Caller, Permissions,
        DEFAULT_SOURCE_APP,
    },
    error::{ApiError, ErrorCode},
    jwt::{self, Subject},
    socket_token,
};

/// A credential as presented, before anything is checked.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// An API key's secret.
    ApiKey(&'a str),
    /// A signed token: a user's access token or an app's cross-app token.
    Bearer(&'a str),
    /// A short-lived connection token for a browser's WebSocket ([`crate::socket_token`]).
    SocketToken(&'a str),
}

/// What a request said about itself besides the credential (`x-source-app`,
/// `x-tenant-id`, `x-request-id`), unchecked.
#[derive(Clone, Debug, Default)]
pub struct Presented {
    pub source_app: Option<String>,
    pub claimed_tenant: Option<String>,
    pub request_id: Option<String>,
}

/// Resolves credentials against the store.
#[derive(Clone)]
pub struct Credentials {
    pub store: Arc<dyn Store>,
    /// Verifies signed tokens.
    pub secret: Arc<[u8]>,
    /// Requests per minute for a signed-in user (keys carry their own limit).
    pub user_rate_limit: u32,
    /// Connection tokens already used: each opens one socket.
    pub spent_tokens: Arc<socket_token::SpentTokens>,
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

impl Credentials {
    /// Resolves a credential and what came with it into a caller.
    pub async fn resolve(
        &self,
        credential: Credential<'_>,
        presented: &Presented,
    ) -> Result<ResolvedCaller, ApiError> {
        match credential {
            Credential::ApiKey(secret) => self.resolve_key(secret, presented).await,
            Credential::Bearer(token) => self.resolve_bearer(token, presented).await,
            Credential::SocketToken(token) => self.resolve_socket_token(token, presented).await,
        }
    }

    async fn resolve_socket_token(
        &self,
        token: &str,
        presented: &Presented,
    ) -> Result<ResolvedCaller, ApiError> {
        let invalid =
            || ApiError::new(ErrorCode::InvalidToken, "token is not valid or has expired");
        let now = chrono::Utc::now();
        let claims = socket_token::verify(&self.secret, token, now).ok_or_else(invalid)?;
        if !self.spent_tokens.spend(&claims, now) {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "this connection token was used already; mint one per connection",
            ));
        }
        let found = self
            .store
            .find_api_key_by_id(claims.key_id)
            .await?
            .ok_or_else(invalid)?;
        let key = checked_key(found)?;
        check_claimed_tenant(presented, key.tenant_id)?;
        // The app was checked against the key when the token was minted; the key's use
        // is recorded when it is presented itself.
        Ok(key_caller(key, claims.app, presented, false))
    }

    async fn resolve_key(
        &self,
        secret: &str,
        presented: &Presented,
    ) -> Result<ResolvedCaller, ApiError> {
        let hash = hash_key(secret);
        let found = self
            .store
            .find_api_key(&hash)
            .await?
            // The lookup is by hash, so timing reveals nothing about the secret; compare in
            // constant time anyway so no future lookup path can leak a prefix match.
            .filter(|found| bool::from(found.key_hash.ct_eq(&hash)))
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "API key is not valid"))?;
        let key = checked_key(found)?;
        let source_app = source_app(presented)?.unwrap_or_else(|| DEFAULT_SOURCE_APP.to_owned());
        require_app_allowed(&key.allowed_apps, &source_app)?;
        check_claimed_tenant(presented, key.tenant_id)?;
        Ok(key_caller(key, source_app, presented, true))
    }

    /// A user's access token or an app's cross-app token.
    async fn resolve_bearer(
        &self,
        token: &str,
        presented: &Presented,
    ) -> Result<ResolvedCaller, ApiError> {
        let claims = jwt::verify(&self.secret, token).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidToken, "token is not valid or has expired")
        })?;
        check_claimed_tenant(presented, claims.tenant_id)?;
        let sent_app = source_app(presented)?;
        let session = match &claims.subject {
            Subject::User { sid, .. } => *sid,
            Subject::App { .. } => None,
        };
        let rate_subject = match &claims.subject {
            Subject::User { sub, .. } => sub.0,
            Subject::App { key, .. } => key.0,
        };
        let expires_at = claims.expires_at();
        let mut permissions = claims.permissions;
        let (actor, source_app, rate_limit) = match claims.subject {
            Subject::User { sub, sid, .. } => {
                // Signed out (or the sign-in's refresh token was copied and spent twice):
                // its access tokens end now, not when they expire.
                if let Some(family) = sid {
                    if !self.store.session_active(family).await? {
                        return Err(ApiError::new(
                            ErrorCode::InvalidToken,
                            "this sign-in has ended; sign in again",
                        ));
                    }
                }
                // The role is read again on every request: a member who was removed or
                // demoted, or whose tenant was suspended, loses access at once, not when the
                // token runs out.
                let membership = self
                    .store
                    .user_memberships(sub)
                    .await?
                    .into_iter()
                    .find(|m| m.tenant.id == claims.tenant_id)
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidToken,
                            "you are no longer a member of this tenant",
                        )
                    })?;
                if !membership.tenant.active {
                    return Err(ApiError::new(
                        ErrorCode::InactiveTenant,
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
                    self.user_rate_limit,
                )
            }
            Subject::App { key, app } => {
                // The key is checked on every use so revoking it ends its tokens at once.
                let found = self
                    .store
                    .find_api_key_by_id(key)
                    .await?
                    .filter(|found| found.key.active && found.tenant_active)
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidToken,
                            "the API key behind this token was revoked",
                        )
                    })?;
                if sent_app.as_ref().is_some_and(|sent| *sent != app) {
                    return Err(ApiError::new(
                        ErrorCode::AppNotAllowed,
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
                request_id: presented.request_id.clone(),
                session,
            },
            rate_subject,
            rate_limit,
            key_id: None,
            expires_at: Some(expires_at),
        })
    }
}

/// The caller a usable key stands for, drawing on the key's own rate limit.
fn key_caller(
    key: ApiKey,
    source_app: String,
    presented: &Presented,
    record_use: bool,
) -> ResolvedCaller {
    ResolvedCaller {
        rate_limit: key.rate_limit_per_minute,
        rate_subject: key.id.0,
        key_id: record_use.then_some(key.id),
        expires_at: None,
        caller: Caller {
            tenant_id: key.tenant_id,
            actor: Actor {
                kind: ActorKind::ApiKey,
                id: key.id.to_string(),
            },
            permissions: Permissions::new(key.permissions),
            source_app,
            request_id: presented.request_id.clone(),
            session: None,
        },
    }
}

/// A found key that may be used: the key active and its tenant too.
fn checked_key(found: ApiKeyWithTenant) -> Result<ApiKey, ApiError> {
    if !found.key.active {
        return Err(ApiError::new(
            ErrorCode::InactiveApiKey,
            "API key has been revoked",
        ));
    }
    if !found.tenant_active {
        return Err(ApiError::new(
            ErrorCode::InactiveTenant,
            "tenant is not active",
        ));
    }
    Ok(found.key)
}

/// The sent app name, validated; `None` when absent.
fn source_app(presented: &Presented) -> Result<Option<String>, ApiError> {
    let Some(app) = presented.source_app.as_deref() else {
        return Ok(None);
    };
    if !valid_app_name(app) {
        return Err(ApiError::new(
            ErrorCode::InvalidSourceApp,
            "x-source-app must be 1-64 characters of a-z, 0-9 and -",
        ));
    }
    Ok(Some(app.to_owned()))
}

/// An `x-tenant-id` header, when sent, must name the credential's tenant.
fn check_claimed_tenant(presented: &Presented, tenant: TenantId) -> Result<(), ApiError> {
    if let Some(claimed) = presented.claimed_tenant.as_deref() {
        let matches = claimed
            .parse::<TenantId>()
            .ok()
            .is_some_and(|id| id == tenant);
        if !matches {
            return Err(ApiError::new(
                ErrorCode::TenantMismatch,
                "x-tenant-id does not match the credential's tenant",
            ));
        }
    }
    Ok(())
}
