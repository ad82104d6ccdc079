//! The one error shape of the API: `{"error": {"code", "message", "details"}}`
//! with the status that fits. A 500 says "internal error"; the cause is logged.
//! The same types describe it in the OpenAPI document.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

use crate::{
    broker::publisher::PublishError, field_error::FieldError, subscriptions::store::StoreError,
};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    details: Vec<Detail>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    error: ErrorFields,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorFields {
    code: ErrorCode,
    /// What went wrong, in words.
    message: String,
    /// One entry per problem: the field a 422 is about, or more words.
    details: Vec<Detail>,
}

/// What kind of error, for a program to branch on (the status says it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: the path or the query string cannot be read.
    BadRequest,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: no such resource, or no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: a name that exists, a request still in progress, a replay refused.
    Conflict,
    /// 413: the body is over `limits.max_event_bytes`.
    TooLarge,
    /// 422: a field broke a rule; `details` names it.
    Invalid,
    /// 503: RabbitMQ or Redis is unavailable.
    Unavailable,
    /// 500: a bug or corrupt stored data; the cause is in the log.
    Internal,
}

/// One problem: `field` is a JSON path (`events[1]`, `headers.x-token`,
/// `body`), or a header or query parameter name.
#[derive(Debug, Serialize, ToSchema)]
struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadJson, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token",
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this route does not take that method",
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// The same error, each of `details` one more entry of `details`.
    pub fn with_details(mut self, details: &[String]) -> Self {
        self.details.extend(details.iter().map(|d| Detail {
            field: None,
            message: d.clone(),
        }));
        self
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, message)
    }

    /// 422 naming the field.
    pub fn invalid(field: &str, message: &str) -> Self {
        FieldError::new(field, message).into()
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }

    pub fn internal(err: anyhow::Error) -> Self {
        error!(error = format!("{err:#}"), "internal error in the API");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// 422 naming the field.
impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        let message = err.to_string();
        Self {
            details: vec![Detail {
                field: Some(err.field),
                message: err.message,
            }],
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::Invalid,
                message,
            )
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                let err = anyhow::Error::from(err);
                tracing::warn!(error = format!("{err:#}"), "subscription store unavailable");
                Self::unavailable("subscription store (Redis) unavailable")
            }
            StoreError::Corrupt(..) | StoreError::Tls(_) => Self::internal(err.into()),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        let message = format!("broker unavailable: {err}");
        tracing::warn!(
            error = format!("{:#}", anyhow::Error::from(err)),
            "publish for the API failed"
        );
        Self::unavailable(message)
    }
}
