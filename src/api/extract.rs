//! Requests read with herald's errors: JSON bodies (413 over the size limit,
//! with or without Content-Length; 400 for anything that is not JSON), path
//! parameters and query strings (400 when they cannot be read).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;
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

/// A path parameter, refused with herald's 400 (not axum's plain text) when
/// it cannot be read, e.g. percent-encoded bytes that are not UTF-8.
pub struct Path<T>(pub T);

/// The query string, refused with herald's 400 when it cannot be read.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "path: {}",
                rejection.body_text()
            ))),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "query: {}",
                rejection.body_text()
            ))),
        }
    }
}
