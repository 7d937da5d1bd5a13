//! API keys: one set of rules for every way a key is made (the admin API, the CLI, the
//! demo set-up). A key never grants more than its creator holds; the CLI acts as the
//! operator (`Caller::system`), who holds everything.

use flow_store::{ApiKey, ApiKeyId, AuditAction, NewApiKey, Store};
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

/// Revokes a key of the caller's tenant; another tenant's key is not found.
pub async fn revoke(store: &dyn Store, caller: &Caller, id: ApiKeyId) -> ApiResult<()> {
    caller.require("admin", "keys")?;
    let mut work = Work::begin(store, caller).await?;
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
    let spec = KeySpec {
        name: input.name,
        permissions: input.permissions,
        allowed_apps: input.allowed_apps.unwrap_or_else(|| vec!["*".into()]),
        rate_limit_per_minute: input.rate_limit_per_minute.unwrap_or(default_rate_limit),
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
