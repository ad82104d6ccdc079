//! `POST /v1/events`: one envelope or an array of up to 1000, validated like
//! AMQP events, published to `<p>.events` and answered 202 with their ids
//! only after the broker confirmed every one.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use futures_util::future::try_join_all;
use serde_json::{Value, json};

use super::{AppState, error::ApiError, extract::JsonBody};
use crate::{
    broker::{headers::Headers, publisher::Destination},
    event::{Decoded, decode_value},
    field_error::FieldError,
};

/// Events one request may carry.
pub const MAX_BATCH: usize = 1000;

pub async fn publish(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let decoded: Vec<Decoded> = match &body {
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
    };
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
    let ids: Vec<&str> = decoded.iter().map(|d| d.event.id.as_str()).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "ids": ids }))))
}
