//! Password rules and argon2id hashing, bounded so a login flood cannot take every core.

use super::*;

const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 256;

/// Argon2 takes 19 MiB and ~20 ms of CPU per hash: a flood of sign-ins must queue here
/// rather than fill the blocking pool (and memory) with hundreds of them.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores * 2)
    })
}

/// Hashes a password with argon2id (OWASP's parameters, the crate's defaults).
pub async fn hash_password(password: &str) -> ApiResult<String> {
    check_password(password)?;
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let password = password.to_owned();
    // About 20 ms of CPU: off the async threads.
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

fn check_password(password: &str) -> ApiResult<()> {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(ApiError::validation(format!(
            "password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

pub(super) async fn verify_password(password: &str, stored: Option<String>) -> ApiResult<bool> {
    // Unknown accounts are checked against a fixed hash so both paths cost the same and
    // timing does not tell which emails have accounts.
    static DECOY: OnceLock<String> = OnceLock::new();
    let known = stored.is_some();
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| {
            DECOY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"decoy password nobody has", &salt)
                        .expect("hashing a constant succeeds")
                        .to_string()
                })
                .clone()
        });
        let matches = PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        known && matches
    })
    .await
    .map_err(ApiError::internal)
}
