//! The subscription routes: list, create, read, create-or-replace,
//! merge-patch, delete, and the signing secret (read, rotate). Every write
//! goes to Redis and reaches every worker's snapshot within a second.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{AppState, error::ApiError, extract::JsonBody};
use crate::{
    field_error::FieldError,
    subscriptions::{
        input::merge_patch,
        model::{Subscription, check_name},
        store::{Expect, Written},
    },
};

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// The SSRF guard's word on a subscription as saved.
fn check_target(state: &AppState, sub: &Subscription) -> Result<(), FieldError> {
    state.http.policy().check_subscription(sub)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("no subscription named {name:?}"))
}

/// The stored subscription `name`, or a 404.
pub(super) async fn stored(state: &AppState, name: &str) -> Result<Subscription, ApiError> {
    let (sub, _) = state
        .store
        .get(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    Ok(sub)
}

pub async fn list(State(state): State<Arc<AppState>>) -> Reply {
    let subs = state.store.list().await?;
    let items: Vec<Value> = subs.iter().map(Subscription::public_json).collect();
    Ok((StatusCode::OK, Json(json!({ "items": items }))))
}

pub async fn create(State(state): State<Arc<AppState>>, JsonBody(body): JsonBody) -> Reply {
    let sub = Subscription::from_json(&body, None)?;
    check_target(&state, &sub)?;
    match state.store.write(&sub, Expect::Absent).await? {
        Written::Conflict => Err(ApiError::conflict(format!(
            "a subscription named {:?} exists; PUT replaces it",
            sub.name
        ))),
        _ => Ok((StatusCode::CREATED, Json(sub.public_json()))),
    }
}

pub async fn get(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Reply {
    let sub = stored(&state, &name).await?;
    Ok((StatusCode::OK, Json(sub.public_json())))
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(mut body): JsonBody,
) -> Reply {
    check_name(&name)?;
    match body.get("name") {
        None | Some(Value::Null) => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("name".into(), Value::String(name.clone()));
            }
        }
        Some(Value::String(n)) if *n == name => {}
        Some(_) => return Err(ApiError::invalid("name", "must match the name in the path")),
    }
    for _ in 0..10 {
        let existing = state.store.get(&name).await?;
        let sub = Subscription::from_json(&body, existing.as_ref().map(|(s, _)| s))?;
        check_target(&state, &sub)?;
        let expect = match &existing {
            Some((_, raw)) => Expect::Current(raw),
            None => Expect::Absent,
        };
        match state.store.write(&sub, expect).await? {
            Written::Created => return Ok((StatusCode::CREATED, Json(sub.public_json()))),
            Written::Replaced => return Ok((StatusCode::OK, Json(sub.public_json()))),
            Written::Conflict => continue, // changed under us: read again
        }
    }
    Err(ApiError::conflict(
        "the subscription keeps changing; try again",
    ))
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody,
) -> Reply {
    if !patch.is_object() {
        return Err(ApiError::invalid(
            "body",
            "a merge patch must be a JSON object",
        ));
    }
    if patch
        .get("name")
        .is_some_and(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(ApiError::invalid(
            "name",
            "cannot be changed; create a new subscription",
        ));
    }
    let updated = state
        .store
        .update(&name, |sub| {
            let mut merged = sub.public_json();
            merge_patch(&mut merged, &patch);
            *sub = Subscription::from_json(&merged, Some(sub))?;
            check_target(&state, sub)?;
            Ok::<_, FieldError>(true)
        })
        .await?
        .ok_or_else(|| not_found(&name))??;
    Ok((StatusCode::OK, Json(updated.public_json())))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

pub async fn secret(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Reply {
    let sub = stored(&state, &name).await?;
    Ok((StatusCode::OK, Json(secret_json(&sub))))
}

pub async fn rotate(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Reply {
    let sub = state
        .store
        .update(&name, |sub| {
            sub.rotate_secret(OffsetDateTime::now_utc());
            Ok::<_, std::convert::Infallible>(true)
        })
        .await?
        .ok_or_else(|| not_found(&name))?
        .unwrap_or_else(|never| match never {});
    Ok((StatusCode::OK, Json(secret_json(&sub))))
}

fn secret_json(sub: &Subscription) -> Value {
    let previous = sub
        .previous_secret
        .as_ref()
        .filter(|p| p.until > OffsetDateTime::now_utc());
    json!({
        "secret": sub.secret.expose(),
        "previous_secret": previous.map(|p| p.secret.expose()),
        "previous_secret_expires_at": previous.map(|p| p.until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
    })
}
