//! Records as a backend creates them from their inputs, and the other rules every backend
//! applies the same way (the clock's precision, search patterns). Written once here, so
//! the backends differ only in SQL.

use chrono::{DateTime, Utc};

use crate::{
    ApiKey, ApiKeyId, ApiKeyWithTenant, CrossAppEvent, EventId, NewApiKey, NewEvent, NewUser,
    StoreError, StoreResult, Tenant, TenantId, User, UserId,
};

/// The current time at the precision the backends keep (microseconds).
pub fn now() -> DateTime<Utc> {
    // Truncated, so a record returned by a write equals the same record read back.
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now is in range")
}

/// The escape character in [`like_contains`] patterns; the SQL names it in `ESCAPE`.
pub const LIKE_ESCAPE: char = '\\';

/// A LIKE pattern matching values that contain `text`, every character of it literally.
pub fn like_contains(text: &str) -> String {
    // Search input must never act as a wildcard: "50%" finds "50%", not "500".
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Tenant {
    /// A new tenant, active from now.
    pub fn new(name: &str, slug: &str) -> Self {
        Self {
            id: TenantId::new(),
            name: name.to_owned(),
            slug: slug.to_owned(),
            active: true,
            created_at: now(),
        }
    }
}

impl User {
    /// An email as users are stored and looked up by.
    pub fn normalize_email(email: &str) -> String {
        // One account per address: a sign-in typed in another case finds the same user.
        email.to_lowercase()
    }

    /// A new user, active from now; the password hash stays with the input.
    pub fn new(input: &NewUser) -> Self {
        Self {
            id: UserId::new(),
            email: Self::normalize_email(&input.email),
            name: input.name.clone(),
            active: true,
            created_at: now(),
        }
    }
}

impl ApiKey {
    /// A new key of `tenant`, active from now and not used yet; the hash stays with the input.
    pub fn new(tenant: TenantId, input: &NewApiKey) -> Self {
        Self {
            id: ApiKeyId::new(),
            tenant_id: tenant,
            name: input.name.clone(),
            prefix: input.prefix.clone(),
            permissions: input.permissions.clone(),
            allowed_apps: input.allowed_apps.clone(),
            rate_limit_per_minute: input.rate_limit_per_minute,
            active: true,
            created_at: now(),
            last_used_at: None,
        }
    }
}

impl ApiKeyWithTenant {
    /// A key as read back with its stored hash and its tenant's state.
    pub fn from_stored(key: ApiKey, key_hash: &[u8], tenant_active: bool) -> StoreResult<Self> {
        // Only a damaged row has another length; refusing it beats comparing a wrong hash.
        let key_hash = key_hash.try_into().map_err(|_| {
            StoreError::Internal(format!(
                "stored key hash is {} bytes, not 32",
                key_hash.len()
            ))
        })?;
        Ok(Self {
            key,
            key_hash,
            tenant_active,
        })
    }
}

impl CrossAppEvent {
    /// `input` as logged in `tenant` at `at`, with a fresh id and its routing-table targets.
    pub fn new(tenant: TenantId, input: &NewEvent, at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::new(),
            event_type: input.event_type,
            source: input.source.clone(),
            target: input
                .event_type
                .target_apps()
                .iter()
                .map(|app| app.to_string())
                .collect(),
            tenant_id: tenant,
            timestamp: at,
            data: input.data.clone(),
            priority: input.priority,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{EventPriority, EventType};

    /// SQL's `LIKE ... ESCAPE` as both databases define it (case aside), to check patterns
    /// by what they match rather than how they are spelled.
    fn like(value: &str, pattern: &str) -> bool {
        fn matches(value: &[char], pattern: &[char]) -> bool {
            match pattern {
                [] => value.is_empty(),
                ['%', rest @ ..] => (0..=value.len()).any(|skip| matches(&value[skip..], rest)),
                ['_', rest @ ..] => !value.is_empty() && matches(&value[1..], rest),
                [LIKE_ESCAPE, literal, rest @ ..] | [literal, rest @ ..] => {
                    value.first() == Some(literal) && matches(&value[1..], rest)
                }
            }
        }
        let value: Vec<char> = value.chars().collect();
        let pattern: Vec<char> = pattern.chars().collect();
        matches(&value, &pattern)
    }

    #[test]
    fn like_contains_matches_the_text_anywhere() {
        let pattern = like_contains("Lovelace");
        assert!(like("Ada Lovelace", &pattern));
        assert!(like("Lovelace & Co", &pattern));
        assert!(!like("Ada Love lace", &pattern));
        assert!(like("anything", &like_contains("")));
    }

    #[test]
    fn like_contains_takes_wildcards_and_the_escape_literally() {
        assert_eq!(like_contains(r"50%_a\b"), r"%50\%\_a\\b%");
        assert!(like("save 50% now", &like_contains("50%")));
        assert!(!like("save 500 now", &like_contains("50%")));
        assert!(like("first_name", &like_contains("t_n")));
        assert!(!like("tin", &like_contains("t_n")));
        assert!(like(r"C:\temp", &like_contains(r"C:\t")));
        assert!(!like("C:temp", &like_contains(r"C:\t")));
    }

    #[test]
    fn now_is_whole_microseconds() {
        for _ in 0..100 {
            assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
        }
    }

    #[test]
    fn users_are_stored_with_a_lowercased_email() {
        let user = User::new(&NewUser {
            email: "Grace.HOPPER@Example.com".into(),
            name: "Grace Hopper".into(),
            password_hash: "$argon2id$...".into(),
        });
        assert_eq!(user.email, "grace.hopper@example.com");
        assert_eq!(user.name, "Grace Hopper");
        assert!(user.active);
        assert_eq!(User::normalize_email("ÅSE@Eksempel.DK"), "åse@eksempel.dk");
    }

    #[test]
    fn new_api_keys_are_active_and_unused() {
        let tenant = TenantId::new();
        let key = ApiKey::new(
            tenant,
            &NewApiKey {
                name: "crm".into(),
                prefix: "flow_ab".into(),
                key_hash: [7; 32],
                permissions: vec!["read:leads".into()],
                allowed_apps: vec!["*".into()],
                rate_limit_per_minute: 120,
            },
        );
        assert_eq!(key.tenant_id, tenant);
        assert_eq!(key.permissions, ["read:leads"]);
        assert_eq!(key.rate_limit_per_minute, 120);
        assert!(key.active);
        assert_eq!(key.last_used_at, None);
        assert_ne!(ApiKey::new(tenant, &sample_key()).id, key.id);
    }

    fn sample_key() -> NewApiKey {
        NewApiKey {
            name: "k".into(),
            prefix: "p".into(),
            key_hash: [0; 32],
            permissions: Vec::new(),
            allowed_apps: Vec::new(),
            rate_limit_per_minute: 1,
        }
    }

    #[test]
    fn a_stored_key_hash_must_be_32_bytes() {
        let key = ApiKey::new(TenantId::new(), &sample_key());
        let found = ApiKeyWithTenant::from_stored(key.clone(), &[9; 32], false).unwrap();
        assert_eq!(found.key_hash, [9; 32]);
        assert!(!found.tenant_active);
        assert!(matches!(
            ApiKeyWithTenant::from_stored(key, &[9; 31], true),
            Err(StoreError::Internal(message)) if message.contains("31 bytes")
        ));
    }

    #[test]
    fn events_take_their_targets_from_the_routing_table() {
        let tenant = TenantId::new();
        let at = now();
        let mut input = NewEvent::new(EventType::LeadCreated, "crm-web", json!({"id": 1}));
        input.priority = EventPriority::Critical;
        let event = CrossAppEvent::new(tenant, &input, at);
        assert_eq!(event.target, ["crm-web", "flow-web"]);
        assert_eq!(event.priority, EventPriority::Critical);
        assert_eq!(event.tenant_id, tenant);
        assert_eq!(event.timestamp, at);
        assert_eq!(event.source, "crm-web");
        assert_eq!(event.data, json!({"id": 1}));
        assert_ne!(CrossAppEvent::new(tenant, &input, at).id, event.id);
    }
}
