//! The dead-letter routes: `GET /v1/dead` lists the dead letters waiting in
//! the log (oldest first, paged by a cursor), `POST /v1/dead/replay` puts the
//! chosen ones back into delivery with attempts starting over, and
//! `POST /v1/dead/purge` drops them on purpose. Reading takes nothing off a
//! queue, so listing is safe while workers run.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Arc,
};

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    extract::{OptionalJsonBody, Query},
};
use crate::{
    broker::session::Session,
    dead_letter::DeadReason,
    delivery::dead::{
        log::{self, Filter, Record},
        replay::{self, ReplayError},
    },
    field_error::FieldError,
};

/// Dead letters one page shows unless asked for fewer; the most it shows.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /v1/dead`'s query parameters as the OpenAPI document shows them;
/// [`ListQuery::read`] reads them (and refuses any other).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the query; ListQuery::read reads it
pub struct ListParams {
    /// Only this subscription's dead letters.
    subscription: Option<String>,
    /// Only dead letters with this `x-herald-reason`.
    #[param(value_type = Option<DeadReason>)]
    reason: Option<String>,
    /// Dead letters on one page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<u64>,
}

/// `GET /v1/dead`'s query: `subscription`, `reason`, `limit`, `cursor`.
struct ListQuery {
    filter: Filter,
    limit: usize,
    /// `next_cursor` of the page before.
    cursor: u64,
}

impl ListQuery {
    fn read(mut params: HashMap<String, String>) -> Result<Self, FieldError> {
        let limit = number::<usize>("limit", params.remove("limit"))?;
        let cursor = number::<u64>("cursor", params.remove("cursor"))?;
        let query = Self {
            filter: Filter {
                subscription: params.remove("subscription"),
                reason: reason(params.remove("reason").as_deref())?,
                event_ids: HashSet::new(),
            },
            limit: self::limit(limit)?.unwrap_or(DEFAULT_LIMIT),
            cursor: cursor.unwrap_or(0),
        };
        match params.into_keys().next() {
            Some(unknown) => Err(FieldError::new(unknown, "unknown query parameter")),
            None => Ok(query),
        }
    }
}

fn number<T: FromStr>(name: &str, text: Option<String>) -> Result<Option<T>, FieldError> {
    text.map(|text| {
        text.parse()
            .map_err(|_| FieldError::new(name, format!("{text:?} is not a whole number")))
    })
    .transpose()
}

/// What replay and purge act on: the filters of a listing, or event ids;
/// nothing (or no body) selects every dead letter.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeadSelection)]
pub struct Selection {
    /// Only this subscription's dead letters.
    subscription: Option<String>,
    /// Only dead letters with this `x-herald-reason`.
    #[schema(value_type = Option<DeadReason>)]
    reason: Option<String>,
    /// Only the dead letters of these events.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    event_ids: HashSet<String>,
    /// At most this many, oldest first.
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One page of dead letters.
#[derive(Serialize, ToSchema)]
#[schema(as = DeadLetterPage)]
pub struct Page {
    items: Vec<Record>,
    /// The `cursor` of the next page; `null` on the last.
    next_cursor: Option<u64>,
}

/// Lists the dead letters waiting, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/dead",
    tag = "dead letters",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = Page),
        (status = 400, description = "The query string cannot be read", body = ErrorBody),
        (status = 422, description = "A query parameter broke a rule, or is unknown; `details` names it", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unavailable", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let query = ListQuery::read(params)?;
    let session = state.link.session()?;
    let page = log::list(
        &session,
        &state.topology,
        &query.filter,
        query.cursor,
        query.limit,
    )
    .await
    .map_err(unavailable)?;
    Ok(Json(Page {
        items: page.records,
        next_cursor: page.next,
    }))
}

/// What a replay or a purge settled.
#[derive(Serialize, ToSchema)]
#[schema(as = DeadSettled)]
pub struct Settled {
    /// How many were replayed (on `POST /v1/dead/replay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<usize>,
    /// How many were purged (on `POST /v1/dead/purge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    purged: Option<usize>,
    items: Vec<Record>,
}

/// Puts the selected dead letters back into delivery, attempts starting over.
#[utoipa::path(
    post,
    path = "/v1/dead/replay",
    tag = "dead letters",
    request_body(content = Option<Selection>, description = "What to replay; no body replays every one"),
    responses(
        (status = 200, description = "Replayed", body = Settled),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "Nothing replayed: a selected dead letter cannot be (`details` says why)", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "A field broke a rule; `details` names it", body = ErrorBody),
        (status = 503, description = "RabbitMQ or Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Json<Settled>, ApiError> {
    let (session, records) = chosen(&state, &body).await?;
    replay::replay(&session, &state.topology, &state.store, &records)
        .await
        .map_err(replay_error)?;
    Ok(Json(Settled {
        replayed: Some(records.len()),
        purged: None,
        items: records,
    }))
}

/// Drops the selected dead letters on purpose.
#[utoipa::path(
    post,
    path = "/v1/dead/purge",
    tag = "dead letters",
    request_body(content = Option<Selection>, description = "What to purge; no body purges every one"),
    responses(
        (status = 200, description = "Purged", body = Settled),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "A field broke a rule; `details` names it", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unavailable", body = ErrorBody),
    ),
)]
pub async fn purge(
    State(state): State<Arc<AppState>>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Json<Settled>, ApiError> {
    let (session, records) = chosen(&state, &body).await?;
    replay::purge(&session, &state.topology, &records)
        .await
        .map_err(replay_error)?;
    Ok(Json(Settled {
        replayed: None,
        purged: Some(records.len()),
        items: records,
    }))
}

/// The dead letters a replay or purge body selects, and the session to act on.
async fn chosen(state: &AppState, body: &Value) -> Result<(Arc<Session>, Vec<Record>), ApiError> {
    let (filter, limit) = selection(body)?;
    let session = state.link.session()?;
    let records = log::select(&session, &state.topology, &filter, limit)
        .await
        .map_err(unavailable)?;
    Ok((session, records))
}

fn selection(body: &Value) -> Result<(Filter, Option<usize>), ApiError> {
    // No body selects every dead letter.
    let body = if body.is_null() { &json!({}) } else { body };
    let selection: Selection =
        serde_path_to_error::deserialize(body).map_err(FieldError::from_serde)?;
    let filter = Filter {
        subscription: selection.subscription,
        reason: reason(selection.reason.as_deref())?,
        event_ids: selection.event_ids,
    };
    Ok((filter, limit(selection.limit)?))
}

fn reason(text: Option<&str>) -> Result<Option<DeadReason>, FieldError> {
    text.map(|text| {
        DeadReason::parse(text).ok_or_else(|| {
            let names: Vec<&str> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
            FieldError::new(
                "reason",
                format!("{text:?} is not one of {}", names.join(", ")),
            )
        })
    })
    .transpose()
}

fn limit(limit: Option<usize>) -> Result<Option<usize>, FieldError> {
    match limit {
        Some(n) if !(1..=MAX_LIMIT).contains(&n) => Err(FieldError::new(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}"),
        )),
        other => Ok(other),
    }
}

fn replay_error(err: ReplayError) -> ApiError {
    match err {
        ReplayError::Refused(why) => ApiError::conflict(refused(&why)).with_details(&why),
        ReplayError::Store(err) => err.into(),
        ReplayError::Publish(err) => err.into(),
    }
}

fn refused(why: &[String]) -> String {
    format!("nothing replayed: {}", why.join("; "))
}

fn unavailable(err: anyhow::Error) -> ApiError {
    tracing::warn!(
        error = format!("{err:#}"),
        "reading the dead-letter log failed"
    );
    ApiError::unavailable(format!("broker unavailable: {err:#}"))
}
