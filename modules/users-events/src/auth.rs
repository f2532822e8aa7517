//! The `Authorization: Token <token>` extractor every authenticated users route takes: the
//! token's signature and expiry, then its credential version against the store's.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use fairway_runtime::Runtime;
use fairway_runtime::http::ApiError;

use crate::token;
use crate::values::UserId;

/// The user a request's valid token names. Missing, malformed, forged, expired or revoked
/// tokens (issued before the user's last password change) are rejected with 401
/// `unauthorized` (the message never repeats the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

/// A 401 with the stable error shape.
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl FromRequestParts<Runtime> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, rt: &Runtime) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization header"))?
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        // Auth schemes are case-insensitive (RFC 9110 §11.1).
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Token"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthorized("expected `Authorization: Token <token>`"))?;
        token::check(rt, token)
            .await?
            .map(AuthUser)
            .map_err(|e| unauthorized(e.to_string()))
    }
}
