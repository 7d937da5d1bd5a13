//! Provisioning: tenants, their API keys, and the demo tenants.

use flow_store::{AuditAction, EventType, NewEvent, Store, StoreError, Tenant};
use serde_json::json;

use super::{
    keys::{self, CreatedKey, KeySpec},
    snapshot, Record, Work,
};
use crate::{
    auth::{hash_key, Caller},
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

/// Turns a display name into a slug: `Acme Corp` -> `acme-corp`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(64).collect()
}

/// Creates a tenant with one admin key, and logs TENANT_CREATED in its event log.
pub async fn create_tenant(
    store: &dyn Store,
    name: &str,
    slug: Option<&str>,
    rate_limit: u32,
) -> ApiResult<(Tenant, CreatedKey)> {
    let name = validate::name("name", name, 200)?;
    let slug = validate::slug(
        "slug",
        &slug.map(str::to_owned).unwrap_or_else(|| slugify(&name)),
    )?;
    let tenant = store.create_tenant(&name, &slug).await?;
    let caller = Caller::system(tenant.id);
    let mut work = Work::begin(store, &caller).await?;
    record_tenant_created(&mut work, &tenant).await?;
    let key = keys::create_in(&mut work, &KeySpec::admin("admin", rate_limit), None).await?;
    work.commit().await?;
    Ok((tenant, key))
}

async fn record_tenant_created(work: &mut Work<'_>, tenant: &Tenant) -> ApiResult<()> {
    work.record(Record {
        action: AuditAction::TenantCreate,
        entity_type: "tenant",
        entity_id: tenant.id.to_string(),
        before: None,
        after: snapshot(&tenant),
        event: Some(NewEvent::new(
            EventType::TenantCreated,
            "flow",
            json!({ "tenantId": tenant.id, "name": tenant.name, "slug": tenant.slug }),
        )),
    })
    .await
}

/// The fixed demo tenants and their well-known keys.
pub const DEMO_TENANTS: [(&str, &str, &str); 2] = [
    ("Demo Company", "demo", "demo-key"),
    ("Demo Company B", "demo-b", "demo-key-b"),
];

/// Creates the demo tenants and keys where missing; returns each tenant with its key.
pub async fn ensure_demo(store: &dyn Store, rate_limit: u32) -> ApiResult<Vec<(Tenant, String)>> {
    let mut out = Vec::new();
    for (name, slug, secret) in DEMO_TENANTS {
        let tenant = match store.find_tenant_by_slug(slug).await? {
            Some(tenant) => tenant,
            None => {
                let tenant = store.create_tenant(name, slug).await?;
                let caller = Caller::system(tenant.id);
                let mut work = Work::begin(store, &caller).await?;
                record_tenant_created(&mut work, &tenant).await?;
                work.commit().await?;
                tenant
            }
        };
        if store.find_api_key(&hash_key(secret)).await?.is_none() {
            match keys::create(
                store,
                &Caller::system(tenant.id),
                &KeySpec::admin("demo", rate_limit),
                Some(secret),
            )
            .await
            {
                Ok(_) => {}
                // Another process created it between our check and insert: fine.
                Err(e) if e.code == ErrorCode::ApiKeyExists => {}
                Err(e) => return Err(e),
            }
        }
        out.push((tenant, secret.to_owned()));
    }
    Ok(out)
}

/// The demo sign-in for the dashboard: an admin of both demo tenants.
pub const DEMO_USER: (&str, &str) = ("demo@flow.local", "demo-password");

/// Creates the demo user where missing and makes it an admin of `tenants`.
pub async fn ensure_demo_user(store: &dyn Store, tenants: &[Tenant]) -> ApiResult<()> {
    let (email, password) = DEMO_USER;
    let user = match store.find_user_credentials(email).await? {
        Some(found) => found.user,
        None => {
            let created = store
                .create_user(&flow_store::NewUser {
                    email: email.into(),
                    name: "Demo Admin".into(),
                    password_hash: super::users::hash_password(password).await?,
                })
                .await;
            match created {
                Ok(user) => user,
                // Another process created it between our check and insert: use theirs.
                Err(flow_store::StoreError::Constraint(_)) => {
                    store
                        .find_user_credentials(email)
                        .await?
                        .ok_or_else(|| ApiError::internal("demo user vanished"))?
                        .user
                }
                Err(other) => return Err(other.into()),
            }
        }
    };
    for tenant in tenants {
        let mut tx = store.begin(tenant.id).await?;
        if tx.get_member(user.id).await.is_err() {
            tx.upsert_member(user.id, flow_store::Role::Admin).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Finds a tenant by slug or id, for the CLI.
pub async fn find_tenant(store: &dyn Store, slug_or_id: &str) -> ApiResult<Tenant> {
    if let Ok(id) = slug_or_id.parse() {
        return store
            .get_tenant(id)
            .await
            .map_err(|e| ApiError::from_store("tenant", e));
    }
    store
        .find_tenant_by_slug(slug_or_id)
        .await?
        .ok_or_else(|| ApiError::from_store("tenant", StoreError::NotFound))
}
