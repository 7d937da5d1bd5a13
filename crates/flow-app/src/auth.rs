//! API keys, permissions and the request's tenant context.

use flow_store::{
    Actor, ActorKind, ApiKeyId, Job, JobOwner, Role, Store, StoreResult, TenantId, UserId,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};

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
    /// A signed-in user's sign-in (refresh-token family): when it ends, so do the
    /// sockets it opened.
    pub session: Option<uuid::Uuid>,
}

impl Caller {
    /// 403 unless the caller holds `operation:resource`.
    pub fn require(&self, operation: &str, resource: &str) -> Result<(), ApiError> {
        if self.permissions.allows(operation, resource) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
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
            session: None,
        }
    }

    /// What a job acting for this caller keeps of it, beside its payload.
    pub fn job_owner(&self) -> JobOwner {
        JobOwner {
            actor: self.actor.clone(),
            permissions: self.permissions.as_slice().to_vec(),
            source_app: self.source_app.clone(),
        }
    }

    /// The caller a job acts for: its owner, with the rights the owner had when it asked,
    /// in the job's tenant. Never read from the payload, which anyone allowed to enqueue
    /// could write. `None` for a job enqueued without an owner.
    pub fn of_job(job: &Job) -> Option<Self> {
        let owner = job.owner.as_ref()?;
        Some(Self {
            tenant_id: job.tenant_id,
            actor: owner.actor.clone(),
            permissions: Permissions::new(owner.permissions.clone()),
            source_app: owner.source_app.clone(),
            request_id: None,
            session: None,
        })
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

/// Whether the credential behind `caller` still holds with the rights it had: its API key
/// (presented directly, or behind an app or connection token) active and still granting
/// them, or its user still a member of the tenant in a role that grants them, and the
/// tenant active. Sockets outlive the request that opened them, so they ask this at every
/// heartbeat; a demoted user's socket closes and reconnects with the new role.
pub async fn credential_still_valid(store: &dyn Store, caller: &Caller) -> StoreResult<bool> {
    let still_granted = |grants: Vec<String>| {
        let now = Permissions::new(grants);
        caller.permissions.as_slice().iter().all(|g| now.covers(g))
    };
    match caller.actor.kind {
        ActorKind::ApiKey | ActorKind::AppToken => {
            let Ok(id) = caller.actor.id.parse::<ApiKeyId>() else {
                return Ok(false);
            };
            Ok(store.find_api_key_by_id(id).await?.is_some_and(|found| {
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
            if let Some(session) = caller.session {
                if !store.session_active(session).await? {
                    return Ok(false);
                }
            }
            Ok(store.user_memberships(id).await?.into_iter().any(|m| {
                m.tenant.id == caller.tenant_id
                    && m.tenant.active
                    && still_granted(role_permissions(m.role))
            }))
        }
        ActorKind::System => Ok(true),
    }
}

/// 403 unless `app` is among a key's allowed apps (`*` allows any).
pub fn require_app_allowed(allowed_apps: &[String], app: &str) -> Result<(), ApiError> {
    if allowed_apps
        .iter()
        .any(|allowed| allowed == "*" || allowed == app)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::AppNotAllowed,
            format!("this key may not be used by the app '{app}'"),
        ))
    }
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
