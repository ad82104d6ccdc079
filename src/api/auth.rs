//! Bearer-token check for every `/v1/` route, in constant time: comparing
//! SHA-256 digests keeps even the token's length from leaking through timing.
//! The OpenAPI document marks the same routes (`guards`) with the bearer scheme.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, error::ApiError};

/// The routes under this prefix need the token.
const GUARDED: &str = "/v1/";

/// Whether the route at `path` needs the token. Routes are literal paths, so
/// a request reaches a `/v1/` route only by a path that starts with `/v1/`.
pub fn guards(path: &str) -> bool {
    path.starts_with(GUARDED)
}

/// Laid over every route; lets a request through to a route `guards` only with the token.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !guards(request.uri().path()) {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = Sha256::digest(state.config.api.token.expose().as_bytes());
    let given = Sha256::digest(presented.as_bytes());
    if presented.is_empty() || !bool::from(expected.ct_eq(&given)) {
        return Err(ApiError::unauthorized());
    }
    Ok(next.run(request).await)
}
