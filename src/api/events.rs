//! `POST /v1/events`: one envelope or an array of up to 1000, validated like
//! AMQP events, published to `<p>.events` and answered 202 with their ids
//! only after the broker confirmed every one. With an `Idempotency-Key` a
//! repeat of the request is answered the same and publishes nothing.
//! Structured-mode CloudEvents are read like envelopes (`event::cloudevents`),
//! alone or in a batch, and must be CloudEvents when the content type says so.

use std::{borrow::Cow, sync::Arc};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use futures_util::future::try_join_all;
use serde::Serialize;
use serde_json::Value;
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{ArrayBuilder, OneOfBuilder, Ref, RefOr, schema::Schema},
};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    extract::JsonBody,
    idempotency::{self, Claim},
};
use crate::{
    broker::{headers::Headers, publisher::Destination},
    event::{Decoded, Wire, cloudevents::StructuredSchema, decode_value, is_cloudevent},
    field_error::FieldError,
};

const CLOUDEVENTS: &str = "application/cloudevents+json";
const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// Events one request may carry.
pub const MAX_BATCH: usize = 1000;

/// The body: one envelope or CloudEvent, or a batch of 1 to [`MAX_BATCH`] of
/// them (its schema only; [`decode`] reads it).
pub struct Events;

impl PartialSchema for Events {
    fn schema() -> RefOr<Schema> {
        let event = || {
            OneOfBuilder::new()
                .item(Ref::from_schema_name(Wire::name()))
                .item(Ref::from_schema_name(StructuredSchema::name()))
        };
        let batch = ArrayBuilder::new()
            .items(event())
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH));
        event().item(batch).into()
    }
}

impl ToSchema for Events {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Wire::name().into_owned(), Wire::schema()));
        Wire::schemas(schemas);
        schemas.push((
            StructuredSchema::name().into_owned(),
            StructuredSchema::schema(),
        ));
        StructuredSchema::schemas(schemas);
    }

    fn name() -> Cow<'static, str> {
        "Events".into()
    }
}

/// An `application/cloudevents-batch+json` body (its schema only).
pub struct CloudEventBatch;

impl PartialSchema for CloudEventBatch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(StructuredSchema::name()))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH))
            .into()
    }
}

impl ToSchema for CloudEventBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            StructuredSchema::name().into_owned(),
            StructuredSchema::schema(),
        ));
    }

    fn name() -> Cow<'static, str> {
        "CloudEventBatch".into()
    }
}

/// The `Idempotency-Key` header as the document shows it; [`idempotency_key`]
/// and `idempotency::claim` read it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header
pub struct Idempotency {
    /// A repeat with the same key and body within `api.idempotency_window`
    /// gets the first answer (`Idempotency-Replayed: true`) and publishes nothing.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    key: Option<String>,
}

/// The answer: the ids of the events, in the order sent.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    ids: Vec<String>,
}

/// Publishes events; answers once the broker confirmed every one.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "One envelope or CloudEvent, or an array of 1 to 1000 of them",
        content(
            (Events = "application/json"),
            (StructuredSchema = "application/cloudevents+json"),
            (CloudEventBatch = "application/cloudevents-batch+json"),
        ),
    ),
    params(Idempotency),
    responses(
        (status = 202, description = "Published and confirmed by the broker", body = Accepted,
            headers(("Idempotency-Replayed" = String,
                description = "`true` when this is the first answer to the same key, replayed"))),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still publishing", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "An envelope or the Idempotency-Key broke a rule; `details` names the field", body = ErrorBody),
        (status = 503, description = "RabbitMQ (or, with an Idempotency-Key, Redis) is unavailable", body = ErrorBody),
    ),
)]
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
    let ids = decoded.iter().map(|d| d.event.id.clone()).collect();
    let answer = serde_json::to_value(Accepted { ids }).expect("ids always serialise");
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
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok()?.parse::<mime::Mime>().ok());
    let items = match (content_type.as_ref().map(mime::Mime::essence_str), body) {
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
