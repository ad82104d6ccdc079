//! `POST /v1/subscriptions/{name}/test`: one delivery now, synchronously, with
//! the subscription's format, headers and signature, through the same client
//! and SSRF guard as real delivery. Nothing is enqueued, retried or counted.

use std::{sync::Arc, time::Instant};

use axum::{Json, extract::State};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    extract::{OptionalJsonBody, Path},
    subscriptions::{Named, stored},
};
use crate::{
    delivery::{request::signed_request, task::DeliveryTask},
    event::{self, Event, Wire},
    subscriptions::template::{RenderError, Templates},
};

/// Characters of the endpoint's answer shown in the reply.
const SHOWN_BODY_CHARS: usize = 4096;

/// What one test delivery came to. A failed delivery is a 200 too: `ok` says.
#[derive(Serialize, ToSchema)]
#[schema(as = TestDelivery)]
pub struct Outcome {
    /// The endpoint answered 2xx.
    ok: bool,
    /// The endpoint's HTTP status; `null` when it did not answer.
    status: Option<u16>,
    duration_ms: f64,
    /// The start of the endpoint's answer (up to 4096 characters).
    response_body: String,
    /// Why there was no answer (refused target, timeout, render error); else `null`.
    error: Option<String>,
}

/// Delivers one event now, synchronously, with the subscription's format,
/// headers and signature. Nothing is enqueued, retried or counted.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{name}/test",
    tag = "subscriptions",
    params(Named),
    request_body(content = Option<Wire>,
        description = "The envelope to send; without a body, a `herald.test` sample"),
    responses(
        (status = 200, description = "The delivery was tried; `ok` says how it went", body = Outcome),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "The envelope broke a rule; `details` names the field", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn send(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Json<Outcome>, ApiError> {
    let sub = stored(&state, &name).await?;
    let event = sample_or(&body)?;
    let body = event.to_json().into();
    let task = DeliveryTask::first(&sub.name, Arc::new(event), body);
    let started = Instant::now();
    let templates = Templates::compile(&sub, Some(state.subscriptions.credentials().clone()))
        .map_err(|err| RenderError::Template(err.to_string()));
    let request = templates
        .and_then(|t| signed_request(&sub, t.as_ref(), &task, state.config.delivery.timeout));
    let result = match request {
        Ok(request) => state.http.send(request).await.map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(match result {
        Ok(response) => {
            let text = String::from_utf8_lossy(&response.body);
            Outcome {
                ok: (200..300).contains(&response.status),
                status: Some(response.status),
                duration_ms,
                response_body: text.chars().take(SHOWN_BODY_CHARS).collect(),
                error: None,
            }
        }
        Err(err) => Outcome {
            ok: false,
            status: None,
            duration_ms,
            response_body: String::new(),
            error: Some(err),
        },
    }))
}

/// The body's envelope, or a `herald.test` sample when there is no body.
fn sample_or(body: &Value) -> Result<Event, ApiError> {
    if body.is_null() {
        let sample = json!({
            "type": "herald.test",
            "source": "herald",
            "data": {"message": "a test delivery from herald"},
        });
        return Ok(event::decode_value(&sample)?.event);
    }
    Ok(event::decode_value(body)?.event)
}
