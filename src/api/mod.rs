//! The HTTP API on `api.listen`: the route table in DESIGN's order (each route
//! with its operation in the OpenAPI document), the shared state handlers see,
//! the token check, the body limit, and JSON answers for unknown routes.

mod auth;
mod dead;
pub mod error;
mod events;
mod extract;
mod health;
mod idempotency;
mod openapi;
mod subscriptions;
mod test_delivery;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, middleware};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::error::ApiError;
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

/// The routes a process serves and the OpenAPI document of them, made from
/// one table: each `routes!` entry adds a handler to the router and its
/// `#[utoipa::path]` operation to the document. `router` adds no route, only
/// the state, the token check and the limits.
pub fn routes(routes: Routes) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let health = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics));
    let table = match routes {
        Routes::All => OpenApiRouter::with_openapi(openapi::Base::openapi())
            .routes(routes!(events::publish))
            .routes(routes!(subscriptions::list, subscriptions::create))
            .routes(routes!(
                subscriptions::get,
                subscriptions::put,
                subscriptions::patch,
                subscriptions::delete
            ))
            .routes(routes!(subscriptions::secret))
            .routes(routes!(subscriptions::rotate))
            .routes(routes!(test_delivery::send))
            .routes(routes!(dead::list))
            .routes(routes!(dead::replay))
            .routes(routes!(dead::purge))
            .routes(routes!(openapi::document))
            .merge(health),
        Routes::HealthAndMetrics => health,
    };
    let (router, mut document) = table.split_for_parts();
    openapi::finish(&mut document);
    (router, document)
}

pub fn router(state: Arc<AppState>, which: Routes) -> Router {
    let (router, _) = routes(which);
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(state.config.limits.max_event_bytes))
        .with_state(state)
}
