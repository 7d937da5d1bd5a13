//! Short-lived connection tokens for browsers, which cannot set headers on a WebSocket.
//!
//! A token is `{key_id}.{app}.{expires_unix}.{nonce}.{hmac}`: it names the API key it was
//! minted from, so revoking the key also ends its tokens. It opens one socket: the
//! nonce is spent on first use ([`SpentTokens`]), so a leaked or replayed token cannot
//! open thousands of sockets within its minute.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Utc};
use flow_store::ApiKeyId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid token vouches for.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub key_id: ApiKeyId,
    pub app: String,
    /// Makes each token unique, so that its use can be recorded.
    pub nonce: String,
    pub expires: DateTime<Utc>,
}

fn signature(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Mints a token for `key_id` used by `app`, valid until `expires`.
pub fn mint(secret: &[u8], key_id: ApiKeyId, app: &str, expires: DateTime<Utc>) -> String {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let payload = format!("{key_id}.{app}.{}.{nonce}", expires.timestamp());
    let mac = hex::encode(signature(secret, &payload).finalize().into_bytes());
    format!("{payload}.{mac}")
}

/// Checks signature and expiry; `None` for anything forged, altered or expired.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Option<TokenClaims> {
    let (payload, mac) = token.rsplit_once('.')?;
    let mac = hex::decode(mac).ok()?;
    // verify_slice compares in constant time.
    signature(secret, payload).verify_slice(&mac).ok()?;
    // The app name may not contain a dot, but split from both ends anyway.
    let (key_id, rest) = payload.split_once('.')?;
    let (rest, nonce) = rest.rsplit_once('.')?;
    let (app, expires) = rest.rsplit_once('.')?;
    let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
    if now >= expires {
        return None;
    }
    Some(TokenClaims {
        key_id: key_id.parse().ok()?,
        app: app.to_owned(),
        nonce: nonce.to_owned(),
        expires,
    })
}

/// The nonces of the tokens this process has accepted, until they expire.
///
/// Per process: on a cluster a token could open one socket on each instance, within
/// the same minute and the key's rate limit and socket caps.
#[derive(Default)]
pub struct SpentTokens(Mutex<HashMap<String, DateTime<Utc>>>);

impl SpentTokens {
    /// Records the token's use; false if it was used before.
    pub fn spend(&self, claims: &TokenClaims, now: DateTime<Utc>) -> bool {
        let mut spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Expired tokens fail verification anyway; forgetting them bounds the set by
        // the tokens minted within one lifetime.
        spent.retain(|_, expires| *expires > now);
        spent.insert(claims.nonce.clone(), claims.expires).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire_and_resist_tampering() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = ApiKeyId::new();
        let now = Utc::now();
        let expires = now + chrono::Duration::seconds(60);
        let token = mint(secret, key, "flow-web", expires);
        let claims = verify(secret, &token, now).expect("valid");
        assert_eq!((claims.key_id, claims.app.as_str()), (key, "flow-web"));
        assert_eq!(claims.expires.timestamp(), expires.timestamp());
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

    #[test]
    fn a_token_is_spent_by_its_first_use_and_forgotten_once_expired() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let now = Utc::now();
        let key = ApiKeyId::new();
        let first = mint(secret, key, "flow-web", now + chrono::Duration::seconds(60));
        let second = mint(secret, key, "flow-web", now + chrono::Duration::seconds(60));
        assert_ne!(first, second, "every token is unique");
        let spent = SpentTokens::default();
        let claims = verify(secret, &first, now).unwrap();
        assert!(spent.spend(&claims, now));
        assert!(!spent.spend(&claims, now), "a second use");
        assert!(spent.spend(&verify(secret, &second, now).unwrap(), now));
        let later = now + chrono::Duration::seconds(61);
        let other = mint(
            secret,
            key,
            "flow-web",
            later + chrono::Duration::seconds(60),
        );
        assert!(spent.spend(&verify(secret, &other, later).unwrap(), later));
        assert_eq!(
            spent.0.lock().unwrap().len(),
            1,
            "expired nonces are forgotten"
        );
    }
}
