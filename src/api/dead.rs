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

use axum::{
    Json,
    extract::{Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, error::ApiError, extract::OptionalJsonBody};
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

/// What replay and purge act on: the filters of a listing, or event ids.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    subscription: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    event_ids: HashSet<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
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
    let items: Vec<Value> = page.records.iter().map(Record::json).collect();
    Ok(Json(json!({"items": items, "next_cursor": page.next})))
}

pub async fn replay(
    State(state): State<Arc<AppState>>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Json<Value>, ApiError> {
    let (session, records) = chosen(&state, &body).await?;
    replay::replay(&session, &state.topology, &state.store, &records)
        .await
        .map_err(replay_error)?;
    Ok(Json(settled("replayed", &records)))
}

pub async fn purge(
    State(state): State<Arc<AppState>>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Json<Value>, ApiError> {
    let (session, records) = chosen(&state, &body).await?;
    replay::purge(&session, &state.topology, &records)
        .await
        .map_err(replay_error)?;
    Ok(Json(settled("purged", &records)))
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

fn settled(how: &str, records: &[Record]) -> Value {
    let items: Vec<Value> = records.iter().map(Record::json).collect();
    json!({ how: records.len(), "items": items })
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
