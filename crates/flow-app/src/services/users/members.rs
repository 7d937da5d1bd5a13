//! The members of a tenant, as its admins manage them, and new accounts.

use super::*;

/// Body of `POST /users`: invites a person to the caller's tenant with a role. They join
/// when they accept with the invitation's token, setting their password if the account is
/// new and confirming it if not.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    pub role: Role,
}

/// Body of `PATCH /users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

/// Creates an account and makes it a member of `tenant` (used by `flow user create` and
/// `--demo`).
pub async fn create_account(
    store: &dyn Store,
    tenant: TenantId,
    email: &str,
    name: &str,
    password: &str,
    role: Role,
) -> ApiResult<User> {
    let user = store
        .create_user(&NewUser {
            email: validate::email(email)?,
            name: validate::name("name", name, 200)?,
            password_hash: hash_password(password).await?,
        })
        .await?;
    let mut tx = store.begin(tenant).await?;
    tx.upsert_member(user.id, role).await?;
    tx.commit().await?;
    Ok(user)
}

/// `GET /users`: the tenant's members.
pub async fn list_members(store: &dyn Store, caller: &Caller) -> ApiResult<Vec<Member>> {
    caller.require("read", "users")?;
    Ok(crate::work::read(store, caller)
        .await?
        .list_members()
        .await?)
}

/// Nobody hands on rights they do not hold: a key (or token) with `admin:keys` alone
/// cannot mint a `*` key, nor one with `admin:users` make someone an admin.
fn require_covered(caller: &Caller, grants: &[String]) -> ApiResult<()> {
    match grants
        .iter()
        .find(|grant| !caller.permissions.covers(grant))
    {
        Some(grant) => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("the caller does not hold {grant:?}, so it cannot grant it"),
        )),
        None => Ok(()),
    }
}

/// How long an invitation's token works.
const INVITATION_DAYS: i64 = 7;

/// `POST /users`: invites someone to the tenant. The answer is the same whether or not the
/// email has an account, and nobody joins without accepting: an admin can neither learn
/// which emails have accounts nor add someone else's account to their tenant. Returns the
/// invitation and its token, which only the person invited may see (the API never shows
/// it; `flow user invite` prints it for the operator to pass on until Flow sends email).
pub async fn invite(
    store: &dyn Store,
    caller: &Caller,
    input: AddMember,
) -> ApiResult<(Invitation, String)> {
    caller.require("admin", "users")?;
    require_covered(caller, &role_permissions(input.role))?;
    let email = validate::email(&input.email)?;
    let mut work = Work::begin(store, caller).await?;
    // Members are listed to the admin anyway: saying so reveals nothing new.
    if let Some(existing) = store.find_user_credentials(&email).await? {
        if work.tx().get_member(existing.user.id).await.is_ok() {
            return Err(ApiError::new(
                ErrorCode::AlreadyAMember,
                "this user is already a member of the tenant",
            ));
        }
    }
    let token = random_hex();
    let at = now();
    let invitation = Invitation {
        id: InvitationId::new(),
        tenant_id: caller.tenant_id,
        email,
        role: input.role,
        invited_by: caller.actor.id.clone(),
        created_at: at,
        expires_at: at + Duration::days(INVITATION_DAYS),
    };
    work.tx()
        .replace_invitation(&NewInvitation {
            invitation: invitation.clone(),
            token_hash: hash_token(&token),
        })
        .await?;
    work.record(Record {
        action: AuditAction::UserInvite,
        entity_type: "invitation",
        entity_id: invitation.id.to_string(),
        before: None,
        after: snapshot(&invitation),
        event: None,
    })
    .await?;
    work.commit().await?;
    Ok((invitation, token))
}

/// Body of `POST /auth/invitations/accept`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The token the invitation was sent with.
    pub token: String,
    /// The account's password: its current one if the email has an account, otherwise
    /// the one to set (10-256 characters).
    pub password: String,
    /// For a new account: the person's name.
    pub name: Option<String>,
}

/// `POST /auth/invitations/accept`: the person invited joins the tenant and is signed in
/// to it. An existing account proves it is theirs with its password (counted against
/// guessing as sign-ins are); a new one is created with the password given.
pub async fn accept_invitation(
    sessions: &Sessions,
    client: IpAddr,
    input: AcceptInvitation,
) -> ApiResult<Session> {
    let store = &*sessions.store;
    let invitation = match input.token.len() {
        1..=128 => store.find_invitation(&hash_token(&input.token)).await?,
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "no pending invitation has this token; it may have expired or been replaced",
        )
    })?;
    let user = match store.find_user_credentials(&invitation.email).await? {
        Some(existing) => {
            let email = &invitation.email;
            if let Err(wait) = sessions.login_guard.check(email, client) {
                return Err(too_many_attempts(wait));
            }
            let hash = Some(existing.password_hash).filter(|_| existing.user.active);
            if input.password.len() > 1024 || !verify_password(&input.password, hash).await? {
                sessions.login_guard.record_failure(email, client);
                return Err(ApiError::new(
                    ErrorCode::InvalidCredentials,
                    "this email has an account: give its password to accept",
                ));
            }
            sessions.login_guard.record_success(email);
            existing.user
        }
        None => {
            let name = input
                .name
                .as_deref()
                .ok_or_else(|| ApiError::validation("name is required for a new account"))?;
            store
                .create_user(&NewUser {
                    email: invitation.email.clone(),
                    name: validate::name("name", name, 200)?,
                    password_hash: hash_password(&input.password).await?,
                })
                .await?
        }
    };
    let joining = Caller {
        actor: flow_store::Actor {
            kind: ActorKind::User,
            id: user.id.to_string(),
        },
        ..Caller::system(invitation.tenant_id)
    };
    let mut work = Work::begin(store, &joining).await?;
    work.tx()
        .accept_invitation(invitation.id)
        .await
        .map_err(|e| ApiError::from_store("invitation", e))?;
    work.tx().upsert_member(user.id, invitation.role).await?;
    let member = work.tx().get_member(user.id).await?;
    work.record(Record {
        action: AuditAction::UserAdd,
        entity_type: "user",
        entity_id: user.id.to_string(),
        before: None,
        after: snapshot(&member),
        event: None,
    })
    .await?;
    work.commit().await?;
    open_session(
        sessions,
        user,
        uuid::Uuid::now_v7(),
        Some(invitation.tenant_id),
    )
    .await
}

/// `PATCH /users/{id}`: changes a member's role; the last admin cannot step down.
pub async fn update_member(
    store: &dyn Store,
    caller: &Caller,
    user: UserId,
    input: UpdateMember,
) -> ApiResult<Member> {
    caller.require("admin", "users")?;
    require_covered(caller, &role_permissions(input.role))?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .get_member(user)
        .await
        .map_err(|e| ApiError::from_store("user", e))?;
    require_covered(caller, &role_permissions(before.role))?;
    if before.role == Role::Admin && input.role != Role::Admin {
        keep_an_admin(&mut work, user).await?;
    }
    work.tx().upsert_member(user, input.role).await?;
    let after = work.tx().get_member(user).await?;
    work.record(Record {
        action: AuditAction::UserUpdate,
        entity_type: "user",
        entity_id: user.to_string(),
        before: snapshot(&before),
        after: snapshot(&after),
        event: None,
    })
    .await?;
    work.commit().await?;
    Ok(after)
}

/// `DELETE /users/{id}`: removes a member from the tenant (the account stays).
pub async fn remove_member(store: &dyn Store, caller: &Caller, user: UserId) -> ApiResult<()> {
    caller.require("admin", "users")?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .get_member(user)
        .await
        .map_err(|e| ApiError::from_store("user", e))?;
    require_covered(caller, &role_permissions(before.role))?;
    if before.role == Role::Admin {
        keep_an_admin(&mut work, user).await?;
    }
    work.tx().delete_member(user).await?;
    work.record(Record {
        action: AuditAction::UserRemove,
        entity_type: "user",
        entity_id: user.to_string(),
        before: snapshot(&before),
        after: None,
        event: None,
    })
    .await?;
    work.commit().await?;
    Ok(())
}

async fn keep_an_admin(work: &mut Work<'_>, leaving: UserId) -> ApiResult<()> {
    // Two admins demoting each other at once must not both succeed.
    work.tx().lock_members().await?;
    let admins = work
        .tx()
        .list_members()
        .await?
        .into_iter()
        .filter(|m| m.role == Role::Admin && m.id != leaving)
        .count();
    if admins == 0 {
        return Err(ApiError::new(
            ErrorCode::LastAdmin,
            "a tenant needs at least one admin",
        ));
    }
    Ok(())
}
