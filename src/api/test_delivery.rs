//! `POST /v1/subscriptions/{name}/test`: one delivery now, synchronously, with
//! the subscription's format, headers and signature, through the same client
//! and SSRF guard as real delivery. Nothing is enqueued, retried or counted.

use std::{sync::Arc, time::Instant};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
};
use serde_json::{Value, json};

use super::{AppState, error::ApiError, subscriptions::stored};
use crate::{
    delivery::{request::signed_request, task::DeliveryTask},
    event::{self, Event},
    subscriptions::template::{RenderError, Templates},
};

/// Characters of the endpoint's answer shown in the reply.
const SHOWN_BODY_CHARS: usize = 4096;

pub async fn send(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
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
            json!({
                "ok": (200..300).contains(&response.status),
                "status": response.status,
                "duration_ms": duration_ms,
                "response_body": text.chars().take(SHOWN_BODY_CHARS).collect::<String>(),
                "error": null,
            })
        }
        Err(err) => json!({
            "ok": false,
            "status": null,
            "duration_ms": duration_ms,
            "response_body": "",
            "error": err,
        }),
    }))
}

/// The body's envelope, or a `herald.test` sample when the body is empty.
fn sample_or(body: &[u8]) -> Result<Event, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let sample = json!({
            "type": "herald.test",
            "source": "herald",
            "data": {"message": "a test delivery from herald"},
        });
        return Ok(event::decode_value(&sample)?.event);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_json(format!("body is not valid JSON: {e}")))?;
    Ok(event::decode_value(&value)?.event)
}
