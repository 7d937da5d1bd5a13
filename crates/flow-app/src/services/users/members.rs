//! The members of a tenant, as its admins manage them, and new accounts.

use super::*;

/// Body of `POST /users`: adds a person to the caller's tenant, creating the account if
/// the email is new (the password is then required and set; otherwise ignored).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    pub name: Option<String>,
    pub password: Option<String>,
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

/// `POST /users`: adds someone to the tenant, creating the account when the email is new.
pub async fn add_member(store: &dyn Store, caller: &Caller, input: AddMember) -> ApiResult<Member> {
    caller.require("admin", "users")?;
    require_covered(caller, &role_permissions(input.role))?;
    let email = validate::email(&input.email)?;
    let user = match store.find_user_credentials(&email).await? {
        Some(existing) => existing.user,
        None => {
            let password = input
                .password
                .as_deref()
                .ok_or_else(|| ApiError::validation("password is required for a new account"))?;
            let name = input
                .name
                .as_deref()
                .ok_or_else(|| ApiError::validation("name is required for a new account"))?;
            store
                .create_user(&NewUser {
                    email,
                    name: validate::name("name", name, 200)?,
                    password_hash: hash_password(password).await?,
                })
                .await?
        }
    };
    let mut work = Work::begin(store, caller).await?;
    if work.tx().get_member(user.id).await.is_ok() {
        return Err(ApiError::new(
            ErrorCode::AlreadyAMember,
            "this user is already a member of the tenant",
        ));
    }
    work.tx().upsert_member(user.id, input.role).await?;
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
    Ok(member)
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
