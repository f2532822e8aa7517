//! Session tokens: standard JWTs (RFC 7519) signed with HMAC-SHA256 (`HS256`, the only algorithm
//! accepted) under the host's secret [`TOKEN_SECRET`], with the claims `sub` (the user id),
//! `iat` and `exp` (seconds since the epoch, [`TOKEN_TTL`] apart) and `cv`, the **credential
//! version**: the position of the user's last credential event (registration or password
//! change), as a decimal string.
//!
//! A token is accepted while its signature and expiry hold *and* its `cv` is still the user's
//! current credential version, read from the store on every authenticated request (see
//! [`crate::auth`]): a password change moves the version, which revokes every token issued
//! before it. Any service holding the key can verify the tokens with a stock JWT library.
//!
//! The `jsonwebtoken` crate parses and checks the format; its HMAC comes from here
//! ([`PROVIDER`]), over the `hmac`/`sha2` crates the workspace already uses, so no RSA or
//! elliptic-curve code is compiled in. The signature is compared in constant time
//! (`hmac::Mac::verify_slice`), and keys shorter than [`MIN_KEY_LEN`] bytes neither sign nor
//! verify. Expiry is checked against the runtime's clock, not the ambient one. Tokens are
//! credentials: never log them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcb_core::Position;
use fairway_runtime::http::ApiError;
use fairway_runtime::{Runtime, Secrets};
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::values::UserId;

/// The name of the signing key in the host's [`Secrets`].
pub const TOKEN_SECRET: &str = "users.token";

/// How long a token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The shortest signing key that signs or verifies anything, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of ours (format, header, algorithm or claims).
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not match (forged, or signed with another key).
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
    /// Issued before the user's password last changed (or for a user that does not exist).
    #[error("the token was revoked: log in again")]
    Revoked,
    /// The key is shorter than [`MIN_KEY_LEN`] bytes: nothing is signed or accepted with it.
    #[error("the signing key is too short")]
    WeakKey,
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch); refused from then on.
    pub exp: u64,
    /// The credential version: the position of the user's last credential event.
    pub cv: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The user it was issued to.
    pub user: UserId,
    /// The credential version it carries.
    pub version: Position,
}

type HmacSha256 = Hmac<Sha256>;

struct Hs256(HmacSha256);

impl Hs256 {
    fn new(key: &[u8]) -> jsonwebtoken::errors::Result<Hs256> {
        if key.len() < MIN_KEY_LEN {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        HmacSha256::new_from_slice(key)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl jsonwebtoken::signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant-time comparison.
        mac.verify_slice(signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256::new(key.as_bytes())?))
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256::new(key.try_get_as_bytes()?)?))
}

/// The `jsonwebtoken` crypto provider of this process: HS256 only, over `hmac`/`sha2`; JWKs are
/// not supported.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs [`PROVIDER`] once; `false` when another provider was installed first (then nothing
/// is signed or verified, since its algorithms may differ from ours).
fn provider_ready() -> bool {
    static READY: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        let _ = PROVIDER.install_default();
        CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &PROVIDER))
    });
    *READY
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// A token for `user` at credential `version`, issued at `now`, valid for [`TOKEN_TTL`].
pub fn sign(
    key: &[u8],
    user: &UserId,
    version: Position,
    now: SystemTime,
) -> Result<String, TokenError> {
    if key.len() < MIN_KEY_LEN || !provider_ready() {
        return Err(TokenError::WeakKey);
    }
    let iat = secs(now);
    let claims = Claims {
        sub: user.to_string(),
        iat,
        exp: iat.saturating_add(TOKEN_TTL.as_secs()),
        cv: version.to_string(),
    };
    let key = EncodingKey::from_secret(key).map_err(|_| TokenError::WeakKey)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|_| TokenError::WeakKey)
}

/// What `token` says, when it is an HS256 JWT signed with `key` and not expired at `now`. Whether
/// its credential version is still current is the caller's check ([`check`] does it).
pub fn verify(key: &[u8], token: &str, now: SystemTime) -> Result<Verified, TokenError> {
    if key.len() < MIN_KEY_LEN || !provider_ready() {
        return Err(TokenError::WeakKey);
    }
    let key = DecodingKey::from_secret(key).map_err(|_| TokenError::WeakKey)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against `now` (the runtime's clock, not the ambient one).
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
    let claims = data.claims;
    if secs(now) >= claims.exp {
        return Err(TokenError::Expired);
    }
    let user = UserId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?;
    let version = claims.cv.parse().map_err(|_| TokenError::Malformed)?;
    Ok(Verified { user, version })
}

fn key(rt: &Runtime) -> Result<Vec<u8>, ApiError> {
    let key = rt
        .require_service::<Secrets>()?
        .get(TOKEN_SECRET)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if key.len() < MIN_KEY_LEN || !provider_ready() {
        tracing::error!(secret = TOKEN_SECRET, "the token signing key is unusable");
        return Err(ApiError::internal(format!(
            "the secret {TOKEN_SECRET:?} is shorter than {MIN_KEY_LEN} bytes"
        )));
    }
    Ok(key)
}

/// Issues a token for `user` at credential `version`, valid for [`TOKEN_TTL`] from the runtime's
/// now.
pub fn issue(rt: &Runtime, user: &UserId, version: Position) -> Result<String, ApiError> {
    sign(&key(rt)?, user, version, rt.env().now()).map_err(|e| ApiError::internal(e.to_string()))
}

/// Verifies a token with the runtime's key and clock, and that its credential version is the
/// user's current one (one backwards read of one event).
pub async fn check(rt: &Runtime, token: &str) -> Result<Result<UserId, TokenError>, ApiError> {
    let verified = match verify(&key(rt)?, token, rt.env().now()) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    match crate::credentials::version(rt, &verified.user).await? {
        Some(current) if current == verified.version => Ok(Ok(verified.user)),
        _ => Ok(Err(TokenError::Revoked)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn pos(n: u64) -> Position {
        Position::from_u64(n)
    }

    fn b64(bytes: &[u8]) -> String {
        use base64_for_tests::encode;
        encode(bytes)
    }

    /// A minimal base64url encoder, so tests can forge tokens by hand.
    mod base64_for_tests {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn encode(bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    chunk.get(1).copied().unwrap_or(0),
                    chunk.get(2).copied().unwrap_or(0),
                ];
                let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(char::from(A[((v >> (18 - 6 * i)) & 63) as usize]));
                }
            }
            out
        }
    }

    /// A token with the given header and claims, signed with `key` as HS256 would be.
    fn hand_signed(key: &[u8], header: &str, claims: &str) -> String {
        let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        format!("{message}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn a_token_names_its_user_and_version_until_it_expires() {
        let user = UserId::parse("u.1").unwrap();
        let t = sign(KEY, &user, pos(7), at(1000)).unwrap();
        let expected = Verified {
            user,
            version: pos(7),
        };
        assert_eq!(verify(KEY, &t, at(1000)), Ok(expected.clone()));
        let end = 1000 + TOKEN_TTL.as_secs();
        assert_eq!(verify(KEY, &t, at(end - 1)), Ok(expected));
        assert_eq!(verify(KEY, &t, at(end)), Err(TokenError::Expired));
    }

    #[test]
    fn tokens_are_standard_hs256_jwts() {
        let user = UserId::parse("ann").unwrap();
        let t = sign(KEY, &user, pos(3), at(1000)).unwrap();
        // What a stock verifier does by hand: HMAC-SHA256 over `header.payload`.
        let (message, _) = t.rsplit_once('.').unwrap();
        let (header, claims) = message.split_once('.').unwrap();
        let again = hand_signed(
            KEY,
            r#"{"typ":"JWT","alg":"HS256"}"#,
            &format!(
                r#"{{"sub":"ann","iat":1000,"exp":{},"cv":"3"}}"#,
                1000 + 86400
            ),
        );
        assert_eq!(
            verify(KEY, &again, at(1001)).map(|v| v.user),
            Ok(user.clone())
        );
        let parsed = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&t).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed.header).unwrap()["alg"],
            "HS256"
        );
        assert_eq!(
            parsed.claims,
            serde_json::json!({"sub": "ann", "iat": 1000, "exp": 1000 + 86400, "cv": "3"})
        );
        assert!(!header.is_empty() && !claims.is_empty());
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let user = UserId::parse("ann").unwrap();
        let t = sign(KEY, &user, pos(1), at(1000)).unwrap();
        let (message, sig) = t.rsplit_once('.').unwrap();
        let (header, _) = message.split_once('.').unwrap();
        // Another key.
        assert_eq!(
            verify(b"another key, also 32 bytes long!", &t, at(1001)),
            Err(TokenError::BadSignature)
        );
        // Claims swapped for another user's (or a later expiry), signature kept.
        for claims in [
            r#"{"sub":"bob","iat":1000,"exp":87400,"cv":"1"}"#,
            r#"{"sub":"ann","iat":1000,"exp":999999999,"cv":"1"}"#,
            r#"{"sub":"ann","iat":1000,"exp":87400,"cv":"2"}"#,
        ] {
            let forged = format!("{header}.{}.{sig}", b64(claims.as_bytes()));
            assert_eq!(
                verify(KEY, &forged, at(1001)),
                Err(TokenError::BadSignature),
                "{claims}"
            );
        }
        let claims = r#"{"sub":"ann","iat":1000,"exp":87400,"cv":"1"}"#;
        // Other algorithms are refused even when correctly signed with the key: `none`, HS512,
        // and a header naming HS256 in another case.
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"hs256","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
        ] {
            let forged = hand_signed(KEY, header, claims);
            assert!(verify(KEY, &forged, at(1001)).is_err(), "{header}");
        }
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        assert_eq!(verify(KEY, &unsigned, at(1001)), Err(TokenError::Malformed));
        // Missing or malformed claims, correctly signed.
        for claims in [
            r#"{"sub":"ann","iat":1000,"cv":"1"}"#,
            r#"{"iat":1000,"exp":87400,"cv":"1"}"#,
            r#"{"sub":"ann","iat":1000,"exp":87400}"#,
            r#"{"sub":"ann","iat":1000,"exp":87400,"cv":"-1"}"#,
            r#"{"sub":"a b","iat":1000,"exp":87400,"cv":"1"}"#,
        ] {
            let forged = hand_signed(KEY, r#"{"alg":"HS256","typ":"JWT"}"#, claims);
            assert_eq!(
                verify(KEY, &forged, at(1001)),
                Err(TokenError::Malformed),
                "{claims}"
            );
        }
        for bad in [
            "",
            "abc",
            "a.b.c",
            "!!.!!.!!",
            &t.replace('.', ""),
            &format!("{t}.x"),
        ] {
            assert!(verify(KEY, bad, at(1001)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn short_keys_never_sign_or_verify() {
        let user = UserId::parse("ann").unwrap();
        for short in [&b""[..], b"k", &[7u8; 31]] {
            assert_eq!(sign(short, &user, pos(1), at(0)), Err(TokenError::WeakKey));
            // A token signed with that key by someone else is refused too.
            let forged = hand_signed(
                if short.is_empty() { b"x" } else { short },
                r#"{"alg":"HS256","typ":"JWT"}"#,
                r#"{"sub":"ann","iat":0,"exp":99999,"cv":"1"}"#,
            );
            assert_eq!(verify(short, &forged, at(1)), Err(TokenError::WeakKey));
        }
        assert!(sign(&[7u8; 32], &user, pos(1), at(0)).is_ok());
    }
}
