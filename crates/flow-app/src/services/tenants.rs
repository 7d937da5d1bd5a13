//! Provisioning: tenants, their API keys, and the demo tenants.

use flow_store::{
    ApiKey, ApiKeyId, AuditAction, EventType, NewApiKey, NewEvent, Store, StoreError, Tenant,
};
use serde_json::json;

use super::{snapshot, Record, Work};
use crate::{
    auth::{generate_key, hash_key, key_prefix, valid_app_name, valid_grant, Caller},
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

/// What a new key may do.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub name: String,
    pub permissions: Vec<String>,
    pub allowed_apps: Vec<String>,
    pub rate_limit_per_minute: u32,
}

impl KeySpec {
    /// A key that may do everything from any app.
    pub fn admin(name: &str, rate_limit_per_minute: u32) -> Self {
        Self {
            name: name.into(),
            permissions: vec!["*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute,
        }
    }

    fn validate(&self) -> ApiResult<()> {
        validate::name("name", &self.name, 100)?;
        if let Some(bad) = self.permissions.iter().find(|p| !valid_grant(p)) {
            return Err(ApiError::validation(format!(
                "permission {bad:?} is not of the form operation:resource, operation:* or *"
            )));
        }
        if let Some(bad) = self
            .allowed_apps
            .iter()
            .find(|a| *a != "*" && !valid_app_name(a))
        {
            return Err(ApiError::validation(format!(
                "app name {bad:?} is not valid"
            )));
        }
        if self.rate_limit_per_minute == 0 {
            return Err(ApiError::validation("rate limit must be positive"));
        }
        Ok(())
    }
}

/// A key as created: the stored record and the secret, which is never shown again.
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

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
    let key = insert_key(&mut work, &KeySpec::admin("admin", rate_limit), None).await?;
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

/// Creates a key for `tenant`. `secret` is only for the fixed demo keys; normally one
/// is generated.
pub async fn create_key(
    store: &dyn Store,
    tenant: &Tenant,
    spec: &KeySpec,
    secret: Option<&str>,
) -> ApiResult<CreatedKey> {
    let caller = Caller::system(tenant.id);
    let mut work = Work::begin(store, &caller).await?;
    let key = insert_key(&mut work, spec, secret).await?;
    work.commit().await?;
    Ok(key)
}

async fn insert_key(
    work: &mut Work<'_>,
    spec: &KeySpec,
    secret: Option<&str>,
) -> ApiResult<CreatedKey> {
    spec.validate()?;
    let (secret, prefix, hash) = match secret {
        Some(fixed) => (fixed.to_owned(), key_prefix(fixed), hash_key(fixed)),
        None => {
            let generated = generate_key();
            (generated.secret, generated.prefix, generated.hash)
        }
    };
    let key = work
        .tx()
        .insert_api_key(&NewApiKey {
            name: spec.name.clone(),
            prefix,
            key_hash: hash,
            permissions: spec.permissions.clone(),
            allowed_apps: spec.allowed_apps.clone(),
            rate_limit_per_minute: spec.rate_limit_per_minute,
        })
        .await?;
    work.record(Record {
        action: AuditAction::ApiKeyCreate,
        entity_type: "api_key",
        entity_id: key.id.to_string(),
        before: None,
        after: snapshot(&key),
        event: None,
    })
    .await?;
    Ok(CreatedKey { key, secret })
}

/// Revokes one of `tenant`'s keys; 404 if the tenant has no such key.
pub async fn revoke_key(store: &dyn Store, tenant: &Tenant, id: ApiKeyId) -> ApiResult<()> {
    let caller = Caller::system(tenant.id);
    let mut work = Work::begin(store, &caller).await?;
    work.tx()
        .revoke_api_key(id)
        .await
        .map_err(|e| ApiError::from_store("api key", e))?;
    work.record(Record {
        action: AuditAction::ApiKeyRevoke,
        entity_type: "api_key",
        entity_id: id.to_string(),
        before: None,
        after: Some(json!({ "active": false })),
        event: None,
    })
    .await?;
    work.commit().await?;
    Ok(())
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
            match create_key(
                store,
                &tenant,
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
