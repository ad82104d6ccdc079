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

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("request body is over limits.max_event_bytes")
            } else {
                ApiError::bad_json(rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| ApiError::bad_json(format!("body is not valid JSON: {err}")))
    }
}
