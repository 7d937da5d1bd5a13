//! Sign-in, refresh-token rotation, sign-out, profiles and the spec's cross-app tokens.

use super::*;

/// What sign-in, sessions and token minting need.
#[derive(Clone)]
pub struct Sessions {
    pub store: Arc<dyn Store>,
    /// Slows password guessing.
    pub login_guard: Arc<LoginGuard>,
    /// Signs access and cross-app tokens.
    pub secret: Arc<[u8]>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
}

/// Body of `POST /auth/login`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
    /// The tenant to sign in to; default: the user's first.
    pub tenant_id: Option<TenantId>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /auth/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refresh {
    /// The refresh token; the dashboard leaves it out and sends it as its httpOnly cookie.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Switch to another of the user's tenants; default: the first.
    pub tenant_id: Option<TenantId>,
}

/// Body of `POST /auth/logout`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logout {
    /// The refresh token; the dashboard leaves it out and sends it as its httpOnly cookie.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// A tenant as a signed-in user sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
}

/// One of the user's tenants, with the role there.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantMembership {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub role: Role,
}

/// Who is signed in, where, and with what rights (`GET /users/profile`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub user: User,
    pub tenant: TenantSummary,
    pub role: Role,
    pub permissions: Vec<String>,
    pub tenants: Vec<TenantMembership>,
}

/// The answer to sign-in and refresh (the spec's `AuthResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// JWT for `Authorization: Bearer` (and `/events?token=`).
    pub access_token: String,
    /// Opaque; spend it once on `POST /auth/refresh` for a new pair. Absent when it was
    /// set as an httpOnly cookie instead (`x-flow-refresh: cookie`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    #[serde(flatten)]
    pub profile: Profile,
}

/// Body of `POST /auth/app-token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintAppToken {
    /// The app the token is for; requests with it act as this app.
    pub source_app: String,
    /// A subset of the key's permissions; default: all of them.
    pub permissions: Option<Vec<String>>,
    /// 60-3600, default 3600 (the spec's one hour).
    pub expires_in_secs: Option<u64>,
}

/// A cross-app token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppToken {
    /// JWT for `Authorization: Bearer`.
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub source_app: String,
    pub permissions: Vec<String>,
}

/// `POST /auth/login`: checks the password, slowing guessing, and opens a session.
pub async fn login(sessions: &Sessions, client: IpAddr, input: Login) -> ApiResult<Session> {
    let email = input.email.trim().to_lowercase();
    if email.len() > 254 || input.password.len() > 1024 {
        // No account has such an email; nothing worth counting or hashing.
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "email or password is wrong",
        ));
    }
    if let Err(wait) = sessions.login_guard.check(&email, client) {
        return Err(too_many_attempts(wait));
    }
    let found = sessions.store.find_user_credentials(&email).await?;
    let stored_hash = found
        .as_ref()
        .filter(|f| f.user.active)
        .map(|f| f.password_hash.clone());
    if !verify_password(&input.password, stored_hash).await? {
        let verdict = sessions.login_guard.record_failure(&email, client);
        if verdict.burst {
            if let Some(found) = &found {
                report_brute_force(sessions, &found.user, client).await;
            }
        }
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "email or password is wrong",
        ));
    }
    sessions.login_guard.record_success(&email);
    let user = found.expect("a verified password belongs to a user").user;
    let family = uuid::Uuid::now_v7();
    open_session(sessions, user, family, input.tenant_id).await
}

pub(super) fn too_many_attempts(wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil() as u64;
    ApiError::new(
        ErrorCode::TooManyAttempts,
        format!("too many failed sign-ins; try again in {} s", secs.max(1)),
    )
    .retry_after(secs)
}

/// A burst of failures against an account is a security incident in each of its tenants.
async fn report_brute_force(sessions: &Sessions, user: &User, client: IpAddr) {
    let memberships = match sessions.store.user_memberships(user.id).await {
        Ok(memberships) => memberships,
        Err(error) => {
            tracing::warn!(%error, "could not look up the tenants of an attacked account");
            return;
        }
    };
    for membership in memberships {
        let caller = Caller::system(membership.tenant.id);
        let report = security::ReportIncident {
            incident_type: "login_brute_force".into(),
            severity: Severity::High,
            description: format!(
                "repeated failed sign-ins for {} from {client}; further attempts are being slowed",
                user.email
            ),
        };
        if let Err(error) = security::report(&*sessions.store, &caller, report).await {
            tracing::warn!(error = %error.message, "could not report a brute-force incident");
        }
    }
}

/// `POST /auth/refresh`: spends the refresh token for a new pair; a second use of a
/// spent token revokes the whole sign-in (it was copied).
pub async fn refresh(sessions: &Sessions, input: Refresh) -> ApiResult<Session> {
    let invalid = || ApiError::new(ErrorCode::InvalidRefreshToken, "refresh token is not valid");
    let hash = hash_token(input.refresh_token.as_deref().ok_or_else(invalid)?);
    // A switch to a tenant the user does not belong to is refused before the token is
    // spent, so the session survives the mistake.
    if let (Some(tenant), Some(token)) = (
        input.tenant_id,
        sessions
            .store
            .find_refresh_token(&hash, now())
            .await?
            .filter(|token| sealed(&sessions.secret, &hash, token)),
    ) {
        let memberships = sessions.store.user_memberships(token.user_id).await?;
        if !memberships
            .iter()
            .any(|m| m.tenant.id == tenant && m.tenant.active)
        {
            return Err(not_a_member());
        }
    }
    match sessions.store.use_refresh_token(&hash, now()).await? {
        // A row Flow did not write (its seal fails) is no token at all, and its reuse
        // ends no one's session.
        RefreshTokenUse::Fresh(token) | RefreshTokenUse::Reused(token)
            if !sealed(&sessions.secret, &hash, &token) =>
        {
            tracing::warn!(user = %token.user_id, "a refresh token without a valid seal was presented");
            Err(invalid())
        }
        RefreshTokenUse::Fresh(token) => {
            let user = match sessions.store.get_user(token.user_id).await {
                Ok(user) if user.active => user,
                Ok(_) | Err(StoreError::NotFound) => return Err(invalid()),
                Err(other) => return Err(other.into()),
            };
            open_session(sessions, user, token.family_id, input.tenant_id).await
        }
        RefreshTokenUse::Reused(token) => {
            sessions
                .store
                .revoke_refresh_family(token.family_id, now())
                .await?;
            tracing::warn!(user = %token.user_id, "refresh token reused; session revoked");
            Err(ApiError::new(
                ErrorCode::RefreshTokenReused,
                "this refresh token was already used; the session has been ended",
            ))
        }
        RefreshTokenUse::Invalid => Err(invalid()),
    }
}

/// `POST /auth/logout`: ends the sign-in the refresh token belongs to.
pub async fn logout(sessions: &Sessions, input: Logout) -> ApiResult<()> {
    let Some(token) = input.refresh_token else {
        return Ok(());
    };
    let hash = hash_token(&token);
    // Spending it finds its family; a spent or unknown token has nothing left to end.
    match sessions.store.use_refresh_token(&hash, now()).await? {
        RefreshTokenUse::Fresh(token) | RefreshTokenUse::Reused(token) => {
            sessions
                .store
                .revoke_refresh_family(token.family_id, now())
                .await?;
        }
        RefreshTokenUse::Invalid => {}
    }
    Ok(())
}

/// Picks the tenant (the requested one must be the user's), mints the access token and
/// the next refresh token of `family`.
pub(super) async fn open_session(
    sessions: &Sessions,
    user: User,
    family: uuid::Uuid,
    tenant: Option<TenantId>,
) -> ApiResult<Session> {
    let memberships: Vec<Membership> = sessions
        .store
        .user_memberships(user.id)
        .await?
        .into_iter()
        .filter(|m| m.tenant.active)
        .collect();
    let chosen = match tenant {
        Some(id) => memberships
            .iter()
            .find(|m| m.tenant.id == id)
            .ok_or_else(not_a_member)?,
        None => memberships.first().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoTenant,
                "this account belongs to no active tenant",
            )
        })?,
    };
    let ttl = sessions.access_token_ttl_secs;
    let claims = Claims::new(
        Subject::User {
            sub: user.id,
            role: chosen.role,
            sid: Some(family),
        },
        chosen.tenant.id,
        role_permissions(chosen.role),
        now(),
        Duration::seconds(ttl as i64),
    );
    let refresh_token = format!("flow_rt_{}", random_hex());
    let token_hash = hash_token(&refresh_token);
    sessions
        .store
        .insert_refresh_token(&NewRefreshToken {
            family_id: family,
            user_id: user.id,
            token_hash,
            expires_at: now() + Duration::days(sessions.refresh_token_ttl_days as i64),
            seal: seal(&sessions.secret, &token_hash, user.id, family),
        })
        .await?;
    Ok(Session {
        access_token: jwt::sign(&sessions.secret, &claims),
        refresh_token: Some(refresh_token),
        token_type: "Bearer",
        expires_in: ttl,
        profile: profile_of(user, chosen.tenant.clone(), chosen.role, &memberships),
    })
}

fn not_a_member() -> ApiError {
    ApiError::new(ErrorCode::NotAMember, "you are not a member of that tenant")
}

fn profile_of(user: User, tenant: Tenant, role: Role, memberships: &[Membership]) -> Profile {
    Profile {
        user,
        tenant: TenantSummary {
            id: tenant.id,
            name: tenant.name,
            slug: tenant.slug,
        },
        role,
        permissions: role_permissions(role),
        tenants: memberships
            .iter()
            .map(|m| TenantMembership {
                id: m.tenant.id,
                name: m.tenant.name.clone(),
                slug: m.tenant.slug.clone(),
                role: m.role,
            })
            .collect(),
    }
}

/// `GET /users/profile`: the signed-in user, with the role held now (which may have
/// changed since the token was minted).
pub async fn profile(sessions: &Sessions, caller: &Caller) -> ApiResult<Profile> {
    let user_id = signed_in_user(caller)?;
    let user = sessions.store.get_user(user_id).await?;
    let memberships = sessions.store.user_memberships(user_id).await?;
    let current = memberships
        .iter()
        .find(|m| m.tenant.id == caller.tenant_id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotAMember, "you are no longer a member"))?;
    Ok(profile_of(
        user,
        current.tenant.clone(),
        current.role,
        &memberships,
    ))
}

fn signed_in_user(caller: &Caller) -> ApiResult<UserId> {
    (caller.actor.kind == ActorKind::User)
        .then(|| caller.actor.id.parse().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotAUser,
                "this needs a user's access token, not a key",
            )
        })
}

/// The MAC binding a stored refresh token to its user and family, keyed with the
/// application's secret: the database alone cannot make a row that passes
/// [`sealed`], so write access to it is not a session as anyone.
fn seal(secret: &[u8], token_hash: &[u8; 32], user: UserId, family: uuid::Uuid) -> [u8; 32] {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"flow refresh token\0");
    mac.update(token_hash);
    mac.update(user.0.as_bytes());
    mac.update(family.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether a stored token carries the seal Flow gave it (in constant time).
fn sealed(secret: &[u8], token_hash: &[u8; 32], token: &RefreshToken) -> bool {
    use subtle::ConstantTimeEq;
    let expected = seal(secret, token_hash, token.user_id, token.family_id);
    token
        .seal
        .as_deref()
        .is_some_and(|found| bool::from(found.ct_eq(&expected[..])))
}

pub(super) fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `POST /auth/app-token`: the spec's cross-app token, minted by a key holder for one of
/// the key's apps with some of its permissions.
pub async fn mint_app_token(
    sessions: &Sessions,
    caller: &Caller,
    input: MintAppToken,
) -> ApiResult<AppToken> {
    if caller.actor.kind != ActorKind::ApiKey {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "cross-app tokens are minted with an API key",
        ));
    }
    let key_id: ApiKeyId = caller.actor.id.parse().map_err(ApiError::internal)?;
    let found = sessions
        .store
        .find_api_key_by_id(key_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "API key is not valid"))?;
    if !auth::valid_app_name(&input.source_app) {
        return Err(ApiError::validation(
            "sourceApp must be 1-64 characters of a-z, 0-9 and -",
        ));
    }
    auth::require_app_allowed(&found.key.allowed_apps, &input.source_app)?;
    let permissions = match input.permissions {
        None => found.key.permissions.clone(),
        Some(requested) => {
            let held = Permissions::new(found.key.permissions.clone());
            for grant in &requested {
                if !auth::valid_grant(grant) || !held.covers(grant) {
                    return Err(ApiError::new(
                        ErrorCode::PermissionDenied,
                        format!("the key does not hold {grant:?}, so a token cannot carry it"),
                    ));
                }
            }
            requested
        }
    };
    let ttl = input.expires_in_secs.unwrap_or(3600);
    if !(60..=3600).contains(&ttl) {
        return Err(ApiError::validation("expiresInSecs must be 60-3600"));
    }
    let claims = Claims::new(
        Subject::App {
            key: key_id,
            app: input.source_app.clone(),
        },
        caller.tenant_id,
        permissions.clone(),
        now(),
        Duration::seconds(ttl as i64),
    );
    Ok(AppToken {
        token: jwt::sign(&sessions.secret, &claims),
        token_type: "Bearer",
        expires_at: claims.expires_at(),
        source_app: input.source_app,
        permissions,
    })
}
