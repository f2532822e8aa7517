//! Password hashing with argon2 (Argon2id, the crate's default cost), off the async executor.
//! The PHC string is what events store; the salt comes from the runtime's environment.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use fairway_runtime::Runtime;
use fairway_runtime::http::ApiError;

use crate::values::Password;

/// Most password hashes computed at once. Each Argon2 run holds ~19 MiB; unbounded, a burst of
/// registrations and logins would hold that many times over.
pub const MAX_CONCURRENT_HASHES: usize = 4;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

async fn hashing_permit() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    HASHING
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("password hashing is shut down"))
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes `password` with a 16-byte `salt` (blocking: tens of milliseconds by design).
pub fn hash_blocking(password: &Password, salt: [u8; 16]) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (blocking). A malformed `phc` never matches.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Hashes `password` on the blocking pool, salted from the runtime's environment.
pub async fn hash(rt: &Runtime, password: Password) -> Result<String, ApiError> {
    let salt = rt.env().new_id().into_bytes();
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || hash_blocking(&password, salt))
        .await
        .map_err(|e| ApiError::internal(format!("password hashing task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Checks `password` against `phc` on the blocking pool.
pub async fn verify(password: String, phc: String) -> Result<bool, ApiError> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
        .await
        .map_err(|e| ApiError::internal(format!("password check task failed: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let pw = Password::parse("correct horse").unwrap();
        let phc = hash_blocking(&pw, [7; 16]).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify_blocking("correct horse", &phc));
        assert!(!verify_blocking("correct horsE", &phc));
        assert!(!verify_blocking("correct horse", "not a phc string"));
        // Another salt, another hash.
        assert_ne!(phc, hash_blocking(&pw, [8; 16]).unwrap());
    }
}
