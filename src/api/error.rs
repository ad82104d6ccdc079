//! The one error shape of the API: `{"error": {"code", "message", "details"}}`
//! with the status that fits. A 500 says "internal error"; the cause is logged.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tracing::error;

use crate::{
    broker::publisher::PublishError, field_error::FieldError, subscriptions::store::StoreError,
};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_json", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// The same error, each of `details` one more entry of `details`.
    pub fn with_details(mut self, details: &[String]) -> Self {
        self.details
            .extend(details.iter().map(|d| json!({"message": d})));
        self
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 422 naming the field.
    pub fn invalid(field: &str, message: &str) -> Self {
        FieldError::new(field, message).into()
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(err: anyhow::Error) -> Self {
        error!(error = format!("{err:#}"), "internal error in the API");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, Json(body)).into_response()
    }
}

/// 422 naming the field.
impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        let details = vec![json!({"field": err.field, "message": err.message})];
        Self {
            details,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", err.to_string())
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
