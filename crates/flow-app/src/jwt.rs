//! Signed bearer tokens (JWT, HS256 with the server secret): a user's access token and
//! the spec's cross-app token, which a key holder mints for one app.

use chrono::{DateTime, Utc};
use flow_store::{ApiKeyId, Role, TenantId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "typ", rename_all = "snake_case")]
pub enum Subject {
    /// A signed-in user acting in one tenant with a role.
    User {
        sub: UserId,
        role: Role,
        /// The sign-in (refresh-token family) the token belongs to: signing out, or a
        /// copied refresh token being spent twice, ends its access tokens at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<uuid::Uuid>,
    },
    /// An app acting for an API key, with a subset of the key's permissions; the key
    /// is looked up on every use, so revoking it ends its tokens.
    App { key: ApiKeyId, app: String },
}

/// The claims of every Flow token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(flatten)]
    pub subject: Subject,
    /// The tenant, named as in the spec's cross-app token.
    #[serde(rename = "tenantId")]
    pub tenant_id: TenantId,
    pub permissions: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Claims valid from `now` for `ttl`.
    pub fn new(
        subject: Subject,
        tenant_id: TenantId,
        permissions: Vec<String>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Self {
        Self {
            subject,
            tenant_id,
            permissions,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
        }
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_default()
    }
}

/// Signs claims with the server secret.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of serialisable claims cannot fail")
}

/// The claims of a token signed with `secret` and not expired; `None` for anything else.
pub fn verify(secret: &[u8], token: &str) -> Option<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    // Tokens are short-lived; a clock a few seconds off should not end them early or late.
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .ok()
        .map(|data| data.claims)
}

/// Cheap check used to tell a JWT from other credentials before verifying it.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_claims(now: DateTime<Utc>, ttl_secs: i64) -> Claims {
        Claims::new(
            Subject::User {
                sub: UserId::new(),
                role: Role::Viewer,
                sid: None,
            },
            TenantId::new(),
            vec!["read:*".into()],
            now,
            chrono::Duration::seconds(ttl_secs),
        )
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_other_secrets_and_expiry() {
        let secret = b"a secret of at least thirty-two bytes!!";
        let claims = user_claims(Utc::now(), 60);
        let token = sign(secret, &claims);
        assert!(looks_like_jwt(&token));
        assert_eq!(verify(secret, &token), Some(claims.clone()));
        assert_eq!(
            verify(b"another secret, another instance.......", &token),
            None
        );
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let mut forged = claims;
        forged.permissions = vec!["*".into()];
        let forged_payload = sign(b"attacker", &forged);
        let forged_body = forged_payload.split('.').nth(1).unwrap();
        assert_eq!(
            verify(secret, &format!("{head}.{forged_body}.{signature}")),
            None
        );
        let expired = sign(
            secret,
            &user_claims(Utc::now() - chrono::Duration::hours(1), 60),
        );
        assert_eq!(verify(secret, &expired), None);
    }

    #[test]
    fn alg_none_is_refused() {
        let claims = user_claims(Utc::now(), 60);
        let body = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims).unwrap(),
        );
        let token = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert_eq!(
            verify(b"a secret of at least thirty-two bytes!!", &token),
            None
        );
    }
}
