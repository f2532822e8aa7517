//! HTTP helpers for modules: one JSON error shape, a JSON body extractor that names the bad
//! field and refuses deeply nested documents, and the mapping from command and view errors to
//! status codes.
//!
//! Every error body is `{"error":{"code":"snake_case","message":"..."}}`; an error that says
//! when to come back (429, 503) also carries `Retry-After` in seconds.
//!
//! Each of these types documents itself in the API contract ([`crate::openapi`]): a
//! [`JsonBody<T>`] is the request body of schema `T` (and the 400/413/415 it answers), a
//! [`Created<T>`] the 201 response, an [`ApiError`] the error response.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dcb_core::StoreError;
use serde::de::DeserializeOwned;

use crate::automation::AutomationError;
use crate::command::{CommandError, DomainError, Rejection};
use crate::view::ViewError;

/// An HTTP error with the stable JSON shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A snake_case code.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `seconds` (at least 1).
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 429 `too_many_requests`, to be retried after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            .retry_after(seconds)
    }

    /// 503 `busy`: a bounded queue is full; retrying after `seconds` may succeed.
    pub fn busy(message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message).retry_after(seconds)
    }

    /// 400 about one field.
    pub fn bad_field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field}: {message}"),
        )
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: the store or a dependency is unavailable; retrying may succeed.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: a bug or damaged data, never caused by the request itself.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            // Input the request carried (a tag too long, ...) is the caller's fault.
            StoreError::InvalidInput(i) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", i.to_string())
            }
            StoreError::Corrupted(_) => ApiError::internal(e.to_string()),
            other => {
                tracing::warn!(error = %other, "store unavailable");
                ApiError::unavailable(other.to_string())
            }
        }
    }
}

impl<E: DomainError> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> ApiError {
        match e {
            CommandError::Rejected(d) => {
                let status = match d.rejection() {
                    Rejection::Conflict => StatusCode::CONFLICT,
                    Rejection::NotFound => StatusCode::NOT_FOUND,
                    Rejection::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                    Rejection::BadRequest => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, d.code(), d.to_string())
            }
            CommandError::Contention { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contention", e.to_string())
                    .retry_after(crate::command::CONTENTION_RETRY_AFTER_SECS)
            }
            CommandError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "command failed");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> ApiError {
        match e {
            ViewError::Store(s) => s.into(),
            // As `ViewError`'s own response: a handler may return either.
            ViewError::Timeout { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "view_not_ready",
                format!("{e}; retry shortly"),
            )
            .retry_after(crate::view::VIEW_RETRY_AFTER_SECS),
            // The message starts with `after: `, the query parameter that carried it.
            ViewError::AheadOfStore { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "view failed");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<AutomationError> for ApiError {
    fn from(e: AutomationError) -> ApiError {
        match e {
            AutomationError::Store(s) => s.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// The deepest nesting of arrays and objects a JSON body may have (the top-level object or array
/// counts as one). Deeper bodies are 400 `json_too_deep` before anything is deserialized, even
/// when the deep part is in a field the handler ignores.
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON request body whose rejections use the [`ApiError`] shape: a missing or mistyped field
/// is 400 naming the field, malformed JSON 400, nesting deeper than [`MAX_JSON_DEPTH`] 400
/// `json_too_deep`, a wrong content type 415, a body over the limit 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_request"
            };
            ApiError::new(status, code, r.body_text())
        })?;
        if let Some(depth) = too_deep(&bytes, MAX_JSON_DEPTH) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "json_too_deep",
                format!(
                    "the JSON body nests deeper than {MAX_JSON_DEPTH} levels (at byte {depth})"
                ),
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, parameters allowed (what axum's `Json`
/// accepts).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// The offset of the first `[` or `{` that opens a level deeper than `max`, outside strings;
/// `None` when the text never nests deeper. One pass, no allocation; anything that is not valid
/// JSON is left to the parser.
pub fn too_deep(json: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

impl<T: schemars::JsonSchema> aide::OperationInput for JsonBody<T> {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        <axum::Json<T> as aide::OperationInput>::operation_input(ctx, operation);
    }

    fn inferred_early_responses(
        ctx: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        use crate::openapi::error_response;
        vec![
            (
                Some(400),
                error_response(
                    ctx,
                    "Malformed JSON (`malformed_json`), a missing field (`missing_field`) or an \
                     invalid one (`invalid_field`), named in the message, or nesting deeper than \
                     64 levels (`json_too_deep`)",
                ),
            ),
            (
                Some(413),
                error_response(ctx, "The body is over the host's limit (`body_too_large`)"),
            ),
            (
                Some(415),
                error_response(
                    ctx,
                    "Not `Content-Type: application/json` (`unsupported_media_type`)",
                ),
            ),
        ]
    }
}

/// A `201 Created` response with a JSON body: what a command route returns when it created
/// something. Documented as the route's 201 response with `T`'s schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, axum::Json(self.0)).into_response()
    }
}

impl<T: schemars::JsonSchema> aide::OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Option<aide::openapi::Response> {
        <axum::Json<T> as aide::OperationOutput>::operation_response(ctx, operation).map(|mut r| {
            if r.description.is_empty() {
                r.description = "Created".to_owned();
            }
            r
        })
    }

    fn inferred_responses(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(201), r)])
            .unwrap_or_default()
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let text = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => {
            // axum reports "Failed to deserialize the JSON body into the target type: PATH: MESSAGE".
            let detail = text
                .split_once("target type: ")
                .map_or(text.as_str(), |(_, d)| d)
                .to_owned();
            let code = if detail.contains("missing field") {
                "missing_field"
            } else {
                "invalid_field"
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, detail)
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            text,
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "body_too_large", text)
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", text),
    }
}

/// The stable code of an error response that carries no JSON body of its own (see
/// [`json_errors`]).
pub fn error_code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// The most bytes of a non-JSON error body kept as the message of its JSON form.
pub const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Middleware (`axum::middleware::from_fn(json_errors)`): rewrites any error response that is
/// not JSON (axum's own 405, a path that does not decode, a rejected body, ...) into the shape of
/// [`ApiError`], `{"error":{"code","message"}}`, with the code of [`error_code_for`] and the
/// original text (at most [`MAX_ERROR_TEXT`] bytes) as the message. The status and the other
/// headers (`Allow`, `Retry-After`, ...) stay.
pub async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut fixed = ApiError::new(status, error_code_for(status), message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `json_errors` over a router whose routes answer plain text, JSON and nothing at all.
    async fn through_json_errors(uri: &str, method: &str) -> Response {
        use axum::routing::get;
        use tower::ServiceExt as _;
        let router = axum::Router::new()
            .route(
                "/plain",
                get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(RETRY_AFTER, "7")],
                        "try again later",
                    )
                }),
            )
            .route(
                "/json",
                get(|| async { ApiError::new(StatusCode::CONFLICT, "taken", "already taken") }),
            )
            .route("/empty", get(|| async { StatusCode::BAD_REQUEST }))
            .layer(axum::middleware::from_fn(json_errors));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("a request");
        router.oneshot(request).await.expect("infallible")
    }

    async fn json_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn json_errors_rewrites_plain_errors_and_keeps_their_status_and_headers() {
        let r = through_json_errors("/plain", "GET").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        let v = json_of(r).await;
        assert_eq!(v["error"]["code"], "unavailable");
        assert_eq!(v["error"]["message"], "try again later");

        let r = through_json_errors("/plain", "DELETE").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            r.headers().get(axum::http::header::ALLOW).is_some(),
            "Allow stays"
        );
        assert_eq!(json_of(r).await["error"]["code"], "method_not_allowed");

        let r = through_json_errors("/empty", "GET").await;
        let v = json_of(r).await;
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(
            v["error"]["message"], "Bad Request",
            "no text: the reason phrase"
        );
    }

    #[tokio::test]
    async fn json_errors_leaves_json_errors_and_successes_alone() {
        let r = through_json_errors("/json", "GET").await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(json_of(r).await["error"]["code"], "taken");
        let r = through_json_errors("/nowhere", "GET").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(r).await["error"]["code"], "not_found");
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(too_deep(nested(64).as_bytes(), 64), None);
        assert_eq!(too_deep(nested(65).as_bytes(), 64), Some(64));
        assert_eq!(too_deep(nested(30_000).as_bytes(), 64), Some(64));
        let obj = format!(r#"{{"a":{{"b":{}}}}}"#, nested(62));
        assert_eq!(too_deep(obj.as_bytes(), 64), None);
        let obj = format!(r#"{{"a":{{"b":{}}}}}"#, nested(63));
        assert!(too_deep(obj.as_bytes(), 64).is_some());
        // Brackets in strings, escaped quotes included, do not count.
        let s = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert_eq!(too_deep(s.as_bytes(), 2), None);
        // Siblings do not add up.
        let wide = format!("[{}]", vec![nested(10); 1000].join(","));
        assert_eq!(too_deep(wide.as_bytes(), 11), None);
    }

    #[test]
    fn json_content_types() {
        let ok = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
            json_content_type(&h)
        };
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/problem+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!ok("application/+json"));
        assert!(!json_content_type(&HeaderMap::new()));
    }

    /// A view route returning `ApiError` (as every documented route does) answers a view
    /// timeout exactly as one returning `ViewError` did: 503 `view_not_ready`, `Retry-After`.
    #[test]
    fn a_view_timeout_is_view_not_ready_with_retry_after_either_way() {
        let timeout = || ViewError::Timeout {
            view: "v".into(),
            position: dcb_core::Position::from_u64(7),
            timeout: std::time::Duration::from_secs(5),
        };
        let e = ApiError::from(timeout());
        assert_eq!(
            (e.status, e.code.as_str(), e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "view_not_ready", Some(1))
        );
        let direct = timeout().into_response();
        assert_eq!(direct.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            direct.headers().get(RETRY_AFTER),
            e.into_response().headers().get(RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_is_a_header() {
        let r = ApiError::busy("full", 0).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let r = ApiError::too_many_requests("slow down", 7).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("7")
        );
        assert!(
            ApiError::not_found("x")
                .into_response()
                .headers()
                .get(RETRY_AFTER)
                .is_none()
        );
    }
}
