//! `POST /v1/events`: one envelope or an array of up to 1000, validated like
//! AMQP events, published to `<p>.events` and answered 202 with their ids
//! only after the broker confirmed every one. With an `Idempotency-Key` a
//! repeat of the request is answered the same and publishes nothing.
//! Structured-mode CloudEvents are read like envelopes (`event::cloudevents`),
//! alone or in a batch, and must be CloudEvents when the content type says so.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use futures_util::future::try_join_all;
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    extract::JsonBody,
    idempotency::{self, Claim},
};
use crate::{
    broker::{headers::Headers, publisher::Destination},
    event::{Decoded, decode_value, is_cloudevent},
    field_error::FieldError,
};

const CLOUDEVENTS: &str = "application/cloudevents+json";
const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// Events one request may carry.
pub const MAX_BATCH: usize = 1000;

pub async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    // A bad request claims no key: fixed and sent again, it is a new request.
    check_cloudevents(&headers, &body)?;
    let decoded = decode(&body)?;
    let guard = match idempotency_key(&headers)? {
        Some(key) => {
            let bytes = serde_json::to_vec(&body).expect("a JSON value always serialises");
            let (prefix, window) = (
                &state.config.redis.prefix,
                state.config.api.idempotency_window,
            );
            match idempotency::claim(&state.store, prefix, key, &bytes, window).await? {
                Claim::Replay(answer) => {
                    let replayed = [("idempotency-replayed", "true")];
                    return Ok((StatusCode::ACCEPTED, replayed, Json(answer)).into_response());
                }
                Claim::First(guard) => Some(guard),
            }
        }
        None => None,
    };
    publish_all(&state, &decoded).await?;
    let ids: Vec<&str> = decoded.iter().map(|d| d.event.id.as_str()).collect();
    let answer = json!({ "ids": ids });
    if let Some(guard) = guard {
        guard.done(&answer).await;
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// The envelopes of a body: one, or a batch of 1 to [`MAX_BATCH`].
fn decode(body: &Value) -> Result<Vec<Decoded>, ApiError> {
    Ok(match body {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(ApiError::invalid(
                    "body",
                    &format!("a batch holds 1 to {MAX_BATCH} events, not {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| decode_value(item).map_err(|e| e.in_item(i)))
                .collect::<Result<_, FieldError>>()?
        }
        single => vec![decode_value(single)?],
    })
}

/// With a CloudEvents content type the body must be what it says: one
/// structured-mode event, or a batch (an array) of them.
fn check_cloudevents(headers: &HeaderMap, body: &Value) -> Result<(), ApiError> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let items = match (essence.as_deref(), body) {
        (Some(CLOUDEVENTS), Value::Object(_)) => std::slice::from_ref(body),
        (Some(CLOUDEVENTS_BATCH), Value::Array(items)) => items.as_slice(),
        (Some(CLOUDEVENTS), _) => {
            return Err(ApiError::invalid(
                "body",
                &format!("{CLOUDEVENTS} is one event, a JSON object"),
            ));
        }
        (Some(CLOUDEVENTS_BATCH), _) => {
            return Err(ApiError::invalid(
                "body",
                &format!("{CLOUDEVENTS_BATCH} is a JSON array of events"),
            ));
        }
        _ => return Ok(()),
    };
    match items.iter().position(|item| !is_cloudevent(item)) {
        Some(i) if body.is_array() => Err(FieldError::required("specversion").in_item(i).into()),
        Some(_) => Err(FieldError::required("specversion").into()),
        None => Ok(()),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))
        })
        .transpose()
}

/// Publishes every event to `<p>.events`, confirmed.
async fn publish_all(state: &AppState, decoded: &[Decoded]) -> Result<(), ApiError> {
    let session = state.link.session()?;
    let publisher = session.publisher();
    let exchange = state.topology.events();
    let publishes = decoded.iter().map(|d| async move {
        let mut body = serde_json::to_value(&d.event).expect("an Event always serialises");
        if d.webhooks_disabled {
            body["webhooks_disabled"] = Value::Bool(true);
        }
        let bytes = serde_json::to_vec(&body).expect("a JSON value always serialises");
        let to = Destination::Exchange {
            name: exchange,
            routing_key: &d.event.event_type,
        };
        publisher.publish(to, &bytes, Headers::new()).await
    });
    try_join_all(publishes).await?;
    Ok(())
}
