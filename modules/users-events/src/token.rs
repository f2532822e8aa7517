//! Signed, expiring tokens: `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, the
//! payload being `<userId>|<expiry in seconds since the epoch>`. The key is the host's secret
//! [`TOKEN_SECRET`]. Tokens are credentials: never log them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fairway_runtime::http::ApiError;
use fairway_runtime::{Runtime, Secrets};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::values::UserId;

/// The name of the signing key in the host's [`Secrets`].
pub const TOKEN_SECRET: &str = "users.token";

/// How long a token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not match (forged, or signed with another key).
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(payload);
    mac
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// A token for `user`, valid until `expires_at`.
pub fn sign(key: &[u8], user: &UserId, expires_at: SystemTime) -> String {
    let payload = format!("{user}|{}", secs(expires_at));
    let sig = mac(key, payload.as_bytes()).finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The user a token was issued to, when its signature is valid and it has not expired at `now`.
pub fn verify(key: &[u8], token: &str, now: SystemTime) -> Result<UserId, TokenError> {
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    mac(key, &payload)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let text = std::str::from_utf8(&payload).map_err(|_| TokenError::Malformed)?;
    let (user, exp) = text.rsplit_once('|').ok_or(TokenError::Malformed)?;
    let exp: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    if secs(now) >= exp {
        return Err(TokenError::Expired);
    }
    UserId::parse(user).map_err(|_| TokenError::Malformed)
}

fn key(rt: &Runtime) -> Result<Vec<u8>, ApiError> {
    rt.require_service::<Secrets>()?
        .get(TOKEN_SECRET)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Issues a token for `user`, valid for [`TOKEN_TTL`] from the runtime's now.
pub fn issue(rt: &Runtime, user: &UserId) -> Result<String, ApiError> {
    Ok(sign(&key(rt)?, user, rt.env().now() + TOKEN_TTL))
}

/// Verifies a token with the runtime's key and clock.
pub fn check(rt: &Runtime, token: &str) -> Result<Result<UserId, TokenError>, ApiError> {
    Ok(verify(&key(rt)?, token, rt.env().now()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let user = UserId::parse("u.1").unwrap();
        let t = sign(KEY, &user, at(1000));
        assert_eq!(verify(KEY, &t, at(999)), Ok(user));
        assert_eq!(verify(KEY, &t, at(1000)), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let user = UserId::parse("ann").unwrap();
        let t = sign(KEY, &user, at(1000));
        // Another key.
        assert_eq!(
            verify(b"another key", &t, at(1)),
            Err(TokenError::BadSignature)
        );
        // A payload swapped for another user's (or a later expiry), signature kept.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode("bob|1000"));
        assert_eq!(verify(KEY, &forged, at(1)), Err(TokenError::BadSignature));
        let later = format!("{}.{sig}", URL_SAFE_NO_PAD.encode("ann|99999"));
        assert_eq!(verify(KEY, &later, at(1)), Err(TokenError::BadSignature));
        for bad in ["", "abc", "a.b.c", "!!.!!", &t.replace('.', "")] {
            assert!(verify(KEY, bad, at(1)).is_err(), "{bad:?} accepted");
        }
    }
}
