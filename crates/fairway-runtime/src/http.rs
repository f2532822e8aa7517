//! HTTP helpers for modules: one JSON error shape, a JSON body extractor that names the bad
//! field, and the mapping from command and view errors to status codes.
//!
//! Every error body is `{"error":{"code":"snake_case","message":"..."}}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
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
        }
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
        (self.status, axum::Json(self.body())).into_response()
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
            ViewError::Timeout { .. } => ApiError::unavailable(e.to_string()),
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

/// A JSON request body whose rejections use the [`ApiError`] shape: a missing or mistyped field
/// is 400 naming the field, malformed JSON 400, a wrong content type 415, a body over the limit
/// 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
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
