//! Short-lived connection tokens for browsers, which cannot set headers on a WebSocket.
//!
//! A token is `{key_id}.{app}.{expires_unix}.{hmac}`: it names the API key it was minted
//! from, so revoking the key also ends its tokens.

use chrono::{DateTime, Utc};
use flow_store::ApiKeyId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid token vouches for.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub key_id: ApiKeyId,
    pub app: String,
}

fn signature(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Mints a token for `key_id` used by `app`, valid until `expires`.
pub fn mint(secret: &[u8], key_id: ApiKeyId, app: &str, expires: DateTime<Utc>) -> String {
    let payload = format!("{key_id}.{app}.{}", expires.timestamp());
    let mac = hex::encode(signature(secret, &payload).finalize().into_bytes());
    format!("{payload}.{mac}")
}

/// Checks signature and expiry; `None` for anything forged, altered or expired.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Option<TokenClaims> {
    let (payload, mac) = token.rsplit_once('.')?;
    let mac = hex::decode(mac).ok()?;
    // verify_slice compares in constant time.
    signature(secret, payload).verify_slice(&mac).ok()?;
    let mut parts = payload.splitn(3, '.');
    let key_id = parts.next()?.parse().ok()?;
    let app = parts.next()?.to_owned();
    let expires: i64 = parts.next()?.parse().ok()?;
    (now.timestamp() < expires).then_some(TokenClaims { key_id, app })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire_and_resist_tampering() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = ApiKeyId::new();
        let now = Utc::now();
        let token = mint(secret, key, "flow-web", now + chrono::Duration::seconds(60));
        assert_eq!(
            verify(secret, &token, now),
            Some(TokenClaims {
                key_id: key,
                app: "flow-web".into()
            })
        );
        assert_eq!(
            verify(secret, &token, now + chrono::Duration::seconds(61)),
            None
        );
        assert_eq!(
            verify(b"another secret, another instance", &token, now),
            None
        );
        let tampered = token.replacen("flow-web", "crm-web", 1);
        assert_eq!(verify(secret, &tampered, now), None);
        assert_eq!(verify(secret, "garbage", now), None);
    }
}
