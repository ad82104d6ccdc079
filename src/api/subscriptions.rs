//! The subscription routes: list, create, read, create-or-replace,
//! merge-patch, delete, and the signing secret (read, rotate). Every write
//! goes to Redis and reaches every worker's snapshot within a second.

use std::{borrow::Cow, sync::Arc};

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{RefOr, schema::Schema},
};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    extract::{JsonBody, Path},
};
use crate::{
    field_error::FieldError,
    subscriptions::{
        input::{Input, merge_patch},
        model::{Subscription, check_name},
        store::{Expect, Written},
    },
};

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// The `{name}` of a subscription's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct Named {
    /// The subscription's name.
    pub name: String,
}

/// `GET /v1/subscriptions`: every subscription, no secrets.
#[derive(Serialize, ToSchema)]
#[schema(as = SubscriptionList)]
pub struct List {
    #[schema(value_type = Vec<Subscription>)]
    items: Vec<Value>,
}

/// `GET .../secret` and `POST .../secret/rotate`: the signing secret, and the
/// one a rotation replaced while it still signs.
#[derive(Serialize, ToSchema)]
#[schema(as = SubscriptionSecret)]
pub struct Secret {
    /// `whsec_<base64>`.
    secret: String,
    /// The secret before the last rotation, while it still signs; else `null`.
    previous_secret: Option<String>,
    /// When `previous_secret` stops signing (RFC 3339); else `null`.
    #[schema(format = DateTime)]
    previous_secret_expires_at: Option<String>,
}

/// A create's body: [`Input`] with `name`, `url` and `events` required.
pub struct Create;

/// A replace's body: [`Input`] with `url` and `events` required (`name`
/// comes from the path).
pub struct Replace;

impl PartialSchema for Create {
    fn schema() -> RefOr<Schema> {
        requiring(
            &["name", "url", "events"],
            "A new subscription; absent fields get their defaults.",
        )
    }
}

impl ToSchema for Create {
    fn name() -> Cow<'static, str> {
        "SubscriptionCreate".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        Input::schemas(schemas);
    }
}

impl PartialSchema for Replace {
    fn schema() -> RefOr<Schema> {
        requiring(
            &["url", "events"],
            "The whole subscription; absent fields get their defaults, an absent `secret` \
             keeps the current one.",
        )
    }
}

impl ToSchema for Replace {
    fn name() -> Cow<'static, str> {
        "SubscriptionReplace".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        Input::schemas(schemas);
    }
}

/// [`Input`]'s schema with `fields` required.
fn requiring(fields: &[&str], description: &str) -> RefOr<Schema> {
    let mut schema = Input::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        object.required = fields.iter().map(|f| (*f).to_owned()).collect();
        object.description = Some(description.to_owned());
    }
    schema
}

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

/// Lists every subscription, without secrets.
#[utoipa::path(
    get,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    responses(
        (status = 200, description = "Every subscription", body = List),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<List>, ApiError> {
    let subs = state.store.list().await?;
    let items = subs.iter().map(Subscription::public_json).collect();
    Ok(Json(List { items }))
}

/// Creates a subscription; its signing secret is generated unless given.
#[utoipa::path(
    post,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    request_body = Create,
    responses(
        (status = 201, description = "Created", body = Subscription),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "A subscription with this name exists", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "A field broke a rule; `details` names it", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
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

/// Reads one subscription, without secrets.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{name}",
    tag = "subscriptions",
    params(Named),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn get(State(state): State<Arc<AppState>>, Path(Named { name }): Path<Named>) -> Reply {
    let sub = stored(&state, &name).await?;
    Ok((StatusCode::OK, Json(sub.public_json())))
}

/// Creates or replaces a subscription; a replace without a `secret` keeps the current one.
#[utoipa::path(
    put,
    path = "/v1/subscriptions/{name}",
    tag = "subscriptions",
    params(Named),
    request_body = Replace,
    responses(
        (status = 200, description = "Replaced", body = Subscription),
        (status = 201, description = "Created", body = Subscription),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "The subscription kept changing under this write; try again", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "A field, or the name in the path, broke a rule; `details` names it", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
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

/// Changes some fields (RFC 7386 JSON merge patch: `null` resets a field to its default).
#[utoipa::path(
    patch,
    path = "/v1/subscriptions/{name}",
    tag = "subscriptions",
    params(Named),
    request_body(content(
        (Input = "application/merge-patch+json"),
        (Input = "application/json"),
    )),
    responses(
        (status = 200, description = "The subscription as patched", body = Subscription),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 413, description = "The body is over `limits.max_event_bytes`", body = ErrorBody),
        (status = 422, description = "The patched subscription broke a rule; `details` names the field", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
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

/// Deletes a subscription; its pending deliveries are dropped and counted as skipped.
#[utoipa::path(
    delete,
    path = "/v1/subscriptions/{name}",
    tag = "subscriptions",
    params(Named),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// Reads the signing secret (the only route that shows it).
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{name}/secret",
    tag = "subscriptions",
    params(Named),
    responses(
        (status = 200, description = "The signing secret", body = Secret),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn secret(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
) -> Result<Json<Secret>, ApiError> {
    let sub = stored(&state, &name).await?;
    Ok(Json(secret_of(&sub)))
}

/// Replaces the signing secret; the old one keeps signing next to it for 24 h.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{name}/secret/rotate",
    tag = "subscriptions",
    params(Named),
    responses(
        (status = 200, description = "The new secret, and the old one while it still signs", body = Secret),
        (status = 404, description = "No subscription has this name", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Path(Named { name }): Path<Named>,
) -> Result<Json<Secret>, ApiError> {
    let sub = state
        .store
        .update(&name, |sub| {
            sub.rotate_secret(OffsetDateTime::now_utc());
            Ok::<_, std::convert::Infallible>(true)
        })
        .await?
        .ok_or_else(|| not_found(&name))?
        .unwrap_or_else(|never| match never {});
    Ok(Json(secret_of(&sub)))
}

fn secret_of(sub: &Subscription) -> Secret {
    let previous = sub
        .previous_secret
        .as_ref()
        .filter(|p| p.until > OffsetDateTime::now_utc());
    Secret {
        secret: sub.secret.expose().to_owned(),
        previous_secret: previous.map(|p| p.secret.expose().to_owned()),
        previous_secret_expires_at: previous.map(|p| p.until.format(&Rfc3339).unwrap_or_default()),
    }
}
