//! The HTTP API on `api.listen`: the route table in DESIGN's order, the
//! shared state handlers see, and the body limit.

mod auth;
mod dead;
pub mod error;
mod events;
mod extract;
mod health;
mod idempotency;
mod subscriptions;
mod test_delivery;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};

use crate::{
    broker::{connectivity::Connectivity, link::Link, topology::Topology},
    config::Config,
    delivery::http::HttpClient,
    metrics::Metrics,
    subscriptions::{current::Subscriptions, store::Store},
};

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub subscriptions: Arc<Subscriptions>,
    pub link: Arc<Link>,
    pub topology: Arc<Topology>,
    /// The broker sessions this process keeps (the API link, the worker's).
    pub connectivity: Arc<Connectivity>,
    /// The delivery client: `POST /v1/subscriptions/{name}/test` sends with it, and
    /// its SSRF guard refuses forbidden literal targets when a subscription is saved.
    pub http: HttpClient,
}

/// Which routes a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Every route: the process runs the API.
    All,
    /// Health and metrics only: a worker-only process.
    HealthAndMetrics,
}

pub fn router(state: Arc<AppState>, routes: Routes) -> Router {
    let v1 = Router::new()
        .route("/v1/events", post(events::publish))
        .route(
            "/v1/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/v1/subscriptions/{name}",
            get(subscriptions::get)
                .put(subscriptions::put)
                .patch(subscriptions::patch)
                .delete(subscriptions::delete),
        )
        .route(
            "/v1/subscriptions/{name}/secret",
            get(subscriptions::secret),
        )
        .route(
            "/v1/subscriptions/{name}/secret/rotate",
            post(subscriptions::rotate),
        )
        .route("/v1/subscriptions/{name}/test", post(test_delivery::send))
        .route("/v1/dead", get(dead::list))
        .route("/v1/dead/replay", post(dead::replay))
        .route("/v1/dead/purge", post(dead::purge))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let base = if routes == Routes::All {
        Router::new().merge(v1)
    } else {
        Router::new()
    };
    base.route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(state.config.limits.max_event_bytes))
        .with_state(state)
}
