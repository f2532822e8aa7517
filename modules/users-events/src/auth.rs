//! The `Authorization: Token <token>` extractor every authenticated users route takes: the
//! token's signature and expiry, then its credential version against the store's.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use fairway_runtime::Runtime;
use fairway_runtime::http::ApiError;
use fairway_runtime::openapi::aide::openapi::{ApiKeyLocation, SecurityScheme};
use fairway_runtime::openapi::{self, GenContext, Operation, OperationInput};

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

/// The security scheme of the routes that take [`AuthUser`], in the API contract.
pub const TOKEN_SCHEME: &str = "token";

/// Documents the route as needing `Authorization: Token <JWT>` (the `token` API-key scheme:
/// OpenAPI's `http` schemes name registered schemes such as `Bearer`, and this header's scheme
/// is `Token`), answering 401 without it.
impl OperationInput for AuthUser {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        openapi::require_security(
            ctx,
            operation,
            TOKEN_SCHEME,
            SecurityScheme::ApiKey {
                location: ApiKeyLocation::Header,
                name: "Authorization".to_owned(),
                description: Some(
                    "`Token <JWT>`: the token `POST /api/users/login` returns (the scheme is \
                     case-insensitive; `Bearer` is not accepted)"
                        .to_owned(),
                ),
                extensions: Default::default(),
            },
        );
    }
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
