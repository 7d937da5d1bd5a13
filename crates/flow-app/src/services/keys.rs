//! API keys: one set of rules for every way a key is made (the admin API, the CLI, the
//! demo set-up). A key never grants more than its creator holds, nor, made by a key, more
//! apps or a higher rate; revoking a key needs its grants too. The CLI acts as the operator
//! (`Caller::system`), who holds everything.

use flow_store::{ActorKind, ApiKey, ApiKeyId, AuditAction, NewApiKey, Store, TenantRead};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{snapshot, Record, Work};
use crate::{
    auth::{generate_key, hash_key, key_prefix, valid_app_name, valid_grant, Caller},
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

/// The most requests per minute a key may be given.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

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

    /// The rules every key follows, whoever makes it.
    fn validate(&self) -> ApiResult<String> {
        let name = validate::name("name", &self.name, 100)?;
        if self.permissions.is_empty() || !self.permissions.iter().all(|g| valid_grant(g)) {
            return Err(ApiError::validation(
                "permissions must be a non-empty list of '*' or operation:resource grants",
            ));
        }
        if self.allowed_apps.is_empty()
            || !self
                .allowed_apps
                .iter()
                .all(|a| a == "*" || valid_app_name(a))
        {
            return Err(ApiError::validation(
                "allowedApps must be a non-empty list of app names or '*'",
            ));
        }
        if !(1..=MAX_RATE_LIMIT).contains(&self.rate_limit_per_minute) {
            return Err(ApiError::validation(format!(
                "rateLimitPerMinute must be 1-{MAX_RATE_LIMIT}"
            )));
        }
        Ok(name)
    }
}

/// A new key: shown with its secret this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

/// The caller's tenant's keys (never their secrets).
pub async fn list(store: &dyn Store, caller: &Caller) -> ApiResult<Vec<ApiKey>> {
    caller.require("admin", "keys")?;
    Ok(super::read(store, caller).await?.list_api_keys().await?)
}

/// Creates a key of the caller's tenant. `secret` is only for the fixed demo keys;
/// normally one is generated.
pub async fn create(
    store: &dyn Store,
    caller: &Caller,
    spec: &KeySpec,
    secret: Option<&str>,
) -> ApiResult<CreatedKey> {
    let mut work = Work::begin(store, caller).await?;
    let created = create_in(&mut work, spec, secret).await?;
    work.commit().await?;
    Ok(created)
}

/// Like [`create`], inside a unit of work that does more (a new tenant's first key).
pub async fn create_in(
    work: &mut Work<'_>,
    spec: &KeySpec,
    secret: Option<&str>,
) -> ApiResult<CreatedKey> {
    let caller = work.caller();
    caller.require("admin", "keys")?;
    let name = spec.validate()?;
    if let Some(grant) = spec
        .permissions
        .iter()
        .find(|grant| !caller.permissions.covers(grant))
    {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("the caller does not hold {grant:?}, so it cannot grant it"),
        ));
    }
    if let Some(own) = presented_key(caller, work.tx()).await? {
        // A key hands on no more than it has: apps and rate as well as grants.
        if let Some(app) = spec
            .allowed_apps
            .iter()
            .find(|app| !allows_app(&own.allowed_apps, app))
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("the caller's key may not be used by {app:?}, so it cannot allow it"),
            ));
        }
        if spec.rate_limit_per_minute > own.rate_limit_per_minute {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "a rate limit of {}/min is above the caller's own key ({}/min)",
                    spec.rate_limit_per_minute, own.rate_limit_per_minute
                ),
            ));
        }
    }
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
            name,
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

/// Revokes a key of the caller's tenant; another tenant's key is not found. The caller
/// must hold every grant of the key, as it would to create it.
pub async fn revoke(store: &dyn Store, caller: &Caller, id: ApiKeyId) -> ApiResult<()> {
    caller.require("admin", "keys")?;
    let mut work = Work::begin(store, caller).await?;
    let target = work
        .tx()
        .list_api_keys()
        .await?
        .into_iter()
        .find(|key| key.id == id)
        .ok_or_else(|| ApiError::not_found("API key"))?;
    if let Some(grant) = target
        .permissions
        .iter()
        .find(|grant| !caller.permissions.covers(grant))
    {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("the key holds {grant:?}, which the caller does not, so it cannot revoke it"),
        ));
    }
    work.tx()
        .revoke_api_key(id)
        .await
        .map_err(|e| ApiError::from_store("API key", e))?;
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

/// The API key the caller presented, if it is a key (not a user or Flow itself).
async fn presented_key(caller: &Caller, read: &mut dyn TenantRead) -> ApiResult<Option<ApiKey>> {
    if caller.actor.kind != ActorKind::ApiKey {
        return Ok(None);
    }
    let Ok(id) = caller.actor.id.parse::<ApiKeyId>() else {
        return Ok(None);
    };
    Ok(read
        .list_api_keys()
        .await?
        .into_iter()
        .find(|key| key.id == id))
}

/// Whether a key allowed `allowed` apps may hand `app` on.
fn allows_app(allowed: &[String], app: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == app)
}

/// Body of `POST /api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub permissions: Vec<String>,
    /// Apps that may present the key in `x-source-app`; default `["*"]`.
    pub allowed_apps: Option<Vec<String>>,
    pub rate_limit_per_minute: Option<u32>,
}

/// `POST /api-keys`: a new key of the caller's tenant, with the request's defaults.
pub async fn create_from_request(
    store: &dyn Store,
    caller: &Caller,
    default_rate_limit: u32,
    input: CreateKey,
) -> ApiResult<CreatedKey> {
    let rate_limit_per_minute = match input.rate_limit_per_minute {
        Some(rate) => rate,
        // The default, but no more than a creating key's own rate.
        None => {
            let mut read = super::read(store, caller).await?;
            presented_key(caller, &mut *read)
                .await?
                .map_or(default_rate_limit, |own| {
                    default_rate_limit.min(own.rate_limit_per_minute)
                })
        }
    };
    let spec = KeySpec {
        name: input.name,
        permissions: input.permissions,
        allowed_apps: input.allowed_apps.unwrap_or_else(|| vec!["*".into()]),
        rate_limit_per_minute,
    };
    create(store, caller, &spec, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KeySpec {
        KeySpec {
            name: "reader".into(),
            permissions: vec!["read:leads".into()],
            allowed_apps: vec!["crm-web".into()],
            rate_limit_per_minute: 60,
        }
    }

    #[test]
    fn one_set_of_rules_for_every_key() {
        assert_eq!(spec().validate().unwrap(), "reader");
        for broken in [
            KeySpec {
                permissions: vec![],
                ..spec()
            },
            KeySpec {
                permissions: vec!["read".into()],
                ..spec()
            },
            KeySpec {
                allowed_apps: vec![],
                ..spec()
            },
            KeySpec {
                allowed_apps: vec!["Not An App".into()],
                ..spec()
            },
            KeySpec {
                rate_limit_per_minute: 0,
                ..spec()
            },
            KeySpec {
                rate_limit_per_minute: MAX_RATE_LIMIT + 1,
                ..spec()
            },
            KeySpec {
                name: " ".into(),
                ..spec()
            },
        ] {
            assert_eq!(
                broken.validate().unwrap_err().code,
                ErrorCode::ValidationFailed,
                "{broken:?}"
            );
        }
    }
}
