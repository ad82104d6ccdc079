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
    let broker = state.health.broker_connected();
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
        "subscriptions": subs.load().len(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
