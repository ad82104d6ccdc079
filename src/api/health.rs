//! Liveness, readiness and metrics: no auth, no secrets. `/readyz` lists each
//! dependency with its state so an operator can read why a worker is not ready.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// `/healthz`: the process runs.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `/readyz`: what this process waits for, if anything.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    /// What is missing: `broker`, `redis`, `snapshot`, `subscription_store_reset`.
    missing: Vec<&'static str>,
    checks: Checks,
    /// Subscriptions in this process's snapshot.
    subscriptions: usize,
    /// The store's change counter the snapshot reflects.
    snapshot_version: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    /// `ok` or `disconnected`.
    broker: &'static str,
    /// `ok` or `disconnected`.
    redis: &'static str,
    /// `ok` or `not loaded`.
    snapshot: &'static str,
    /// Redis came back empty; the snapshot is kept until the store is written again.
    subscription_store_reset: bool,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 200 when connected to RabbitMQ and Redis with the subscription snapshot loaded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; `missing` says what it waits for", body = Readiness),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let broker = state.connectivity.all_up();
    let subs = &state.subscriptions;
    let redis = subs.redis_connected();
    let snapshot = subs.is_loaded();
    let reset = subs.store_reset();
    let mut missing = Vec::new();
    if !broker {
        missing.push("broker");
    }
    if !redis {
        missing.push("redis");
    }
    if !snapshot {
        missing.push("snapshot");
    }
    if reset {
        missing.push("subscription_store_reset");
    }
    let ready = missing.is_empty();
    let snapshot_now = subs.load();
    let state_of = |ok: bool, bad: &'static str| if ok { "ok" } else { bad };
    let body = Readiness {
        ready,
        missing,
        checks: Checks {
            broker: state_of(broker, "disconnected"),
            redis: state_of(redis, "disconnected"),
            snapshot: state_of(snapshot, "not loaded"),
            subscription_store_reset: reset,
        },
        subscriptions: snapshot_now.len(),
        snapshot_version: snapshot_now.version,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics, `herald_*`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // Gauges of state are read at scrape time: never stale, no timer needed.
    let (metrics, subscriptions) = (&state.metrics, &state.subscriptions);
    metrics
        .broker_connected
        .set(i64::from(state.connectivity.all_up()));
    metrics
        .redis_connected
        .set(i64::from(subscriptions.redis_connected()));
    if subscriptions.is_loaded() {
        let count = subscriptions.load().len();
        metrics
            .subscriptions
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    if let Some(age) = subscriptions.age() {
        metrics.snapshot_age.set(age.as_secs_f64());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
