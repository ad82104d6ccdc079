//! The OpenAPI 3.1 document of the API, served at `GET /openapi.json`. Its
//! operations come from the same route table as the router (`super::routes`,
//! utoipa-axum), its schemas from the types the handlers read and write; this
//! file adds what holds for every operation: the bearer scheme on `/v1/`.

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        self, Ref, RefOr, ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use super::{Routes, auth, error::ErrorBody};

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// What the document says beyond its operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Durable, queue-backed webhook delivery: ingest events, manage \
            subscriptions, inspect and replay dead letters. Every `/v1/` route needs \
            `Authorization: Bearer <api.token>`. Errors are \
            `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    ),
    tags(
        (name = "events", description = "Ingest: events published to RabbitMQ"),
        (name = "subscriptions", description = "Who gets which events, and how"),
        (name = "dead letters", description = "Deliveries that were given up"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    ),
)]
pub(super) struct Base;

/// The document, as served.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let (_, document) = super::routes(Routes::All);
    document
        .to_json()
        .expect("an OpenAPI document always serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// Adds what every operation shares once the route table has made them: the
/// bearer scheme, required (with its 401) on every path `auth` guards.
pub(super) fn finish(document: &mut openapi::OpenApi) {
    let components = document.components.get_or_insert_default();
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`api.token` of the configuration"))
                .build(),
        ),
    );
    components
        .schemas
        .entry(ErrorBody::name().into_owned())
        .or_insert_with(ErrorBody::schema);
    let unauthorized = ResponseBuilder::new()
        .description("Missing or wrong bearer token")
        .content(
            "application/json",
            openapi::ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build();
    for (path, item) in &mut document.paths.paths {
        if !auth::guards(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![SecurityRequirement::new(BEARER, [""; 0])]);
            operation
                .responses
                .responses
                .insert("401".into(), RefOr::T(unauthorized.clone()));
        }
    }
}
