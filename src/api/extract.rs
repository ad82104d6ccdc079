//! Request bodies as JSON, with herald's errors: 413 over the size limit
//! (with or without Content-Length), 400 for anything that is not JSON.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde_json::Value;

use super::error::ApiError;

/// A JSON body of any shape; the handler validates it field by field.
pub struct JsonBody(pub Value);

/// A JSON body that may be left out: an empty body reads as `null`.
pub struct OptionalJsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json(&bytes(req, state).await?).map(JsonBody)
    }
}

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(Value::Null));
        }
        json(&bytes).map(OptionalJsonBody)
    }
}

async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("request body is over limits.max_event_bytes")
        } else {
            ApiError::bad_json(rejection.body_text())
        }
    })
}

fn json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_json(format!("body is not valid JSON: {err}")))
}
