//! Password hashing with argon2 (Argon2id, the crate's default cost) on two dedicated threads,
//! each reusing its Argon2 working memory, behind a bounded, cancellable queue
//! ([`crate::hash_pool`]). The PHC string is what events store; the salt comes from the
//! runtime's environment. Passwords reach this module only as [`Password`] values, capped at
//! [`MAX_PASSWORD_BYTES`](crate::MAX_PASSWORD_BYTES) bytes.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use fairway_runtime::Runtime;
use fairway_runtime::http::ApiError;

use crate::hash_pool::POOL;
pub use crate::hash_pool::{BUSY_RETRY_AFTER_SECS, HASH_QUEUE, HASH_THREADS};
use crate::values::Password;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

thread_local! {
    /// Each hashing thread's Argon2 working memory (~19 MiB), allocated once and reused, so
    /// hashing allocates nothing per password and memory stays flat under load.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs Argon2 with `params` into an output of `out_len` bytes, in this thread's reused memory.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out_len: usize,
) -> password_hash::Result<Output> {
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        let need = params.block_count();
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        let memory = blocks.get_mut(..need).ok_or(password_hash::Error::Crypto)?;
        Output::init_with(out_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt, out, &mut *memory)
                .map_err(|_| password_hash::Error::Crypto)
        })
    })
}

/// Hashes `password` with a 16-byte `salt` (blocking: tens of milliseconds by design). The
/// result is a standard PHC string (Argon2id, the crate's default cost).
pub fn hash_blocking(password: &Password, salt: [u8; 16]) -> Result<String, HashError> {
    let params = Params::DEFAULT;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let err = |e: password_hash::Error| HashError(e.to_string());
    let salt_string = SaltString::encode_b64(&salt).map_err(err)?;
    let output = compute(
        &argon,
        &params,
        password.expose().as_bytes(),
        &salt,
        Params::DEFAULT_OUTPUT_LEN,
    )
    .map_err(err)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(err)?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (blocking). A malformed `phc` never matches.
/// The comparison is constant-time.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut buf) else {
        return false;
    };
    compute(&argon, &params, password.as_bytes(), salt, expected.len())
        .is_ok_and(|computed| computed == expected)
}

async fn on_hash_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    POOL.run(f).await
}

/// Hashes `password` on a hashing thread, salted from the runtime's environment.
pub async fn hash(rt: &Runtime, password: Password) -> Result<String, ApiError> {
    let salt = rt.env().new_id().into_bytes();
    on_hash_thread(move || hash_blocking(&password, salt))
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A real hash of a password nobody has, so that a login for an unknown email costs the same
/// time as one with a wrong password (no way to probe which emails are registered).
static ABSENT_USER: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
    let password = Password::parse("no user has this password: timing only").ok()?;
    hash_blocking(&password, [0x5a; 16]).ok()
});

/// Spends the time of one verification and answers `false`: for logins whose user does not exist.
pub async fn verify_absent(password: Password) -> Result<bool, ApiError> {
    on_hash_thread(move || {
        if let Some(phc) = ABSENT_USER.as_deref() {
            let _ = verify_blocking(password.expose(), phc);
        }
        false
    })
    .await
}

/// Checks `password` against `phc` on a hashing thread.
pub async fn verify(password: Password, phc: String) -> Result<bool, ApiError> {
    on_hash_thread(move || verify_blocking(password.expose(), &phc)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_absent_user_costs_a_verification_and_never_matches() {
        assert!(ABSENT_USER.is_some(), "the timing hash must exist");
        for pw in ["", "no user has this password: timing only", "x"] {
            let pw = Password::candidate(pw).unwrap();
            assert!(!verify_absent(pw).await.unwrap());
        }
    }

    #[test]
    fn hashes_are_standard_phc_strings() {
        use argon2::PasswordVerifier;
        let pw = Password::parse("correct horse").unwrap();
        let phc = hash_blocking(&pw, [9; 16]).unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        // The stock verifier accepts ours, and ours accepts the stock hasher's.
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        use argon2::PasswordHasher;
        let salt = SaltString::encode_b64(&[3; 16]).unwrap();
        let stock = Argon2::default()
            .hash_password(b"pw-1234567", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking("pw-1234567", &stock));
        assert!(!verify_blocking("pw-1234568", &stock));
        assert!(!verify_blocking("pw-1234567", "$argon2id$v=19$garbage"));
    }

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
