//! Liveness, readiness and metrics: no auth, no secrets. `/readyz` lists each
//! dependency with its state so an operator can read why a worker is not ready.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
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
    let state_of = |ok: bool, bad: &str| if ok { "ok".to_owned() } else { bad.to_owned() };
    let body = json!({
        "ready": ready,
        "missing": missing,
        "checks": {
            "broker": state_of(broker, "disconnected"),
            "redis": state_of(redis, "disconnected"),
            "snapshot": state_of(snapshot, "not loaded"),
            "subscription_store_reset": reset,
        },
        "subscriptions": snapshot_now.len(),
        "snapshot_version": snapshot_now.version,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

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
