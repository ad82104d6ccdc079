//! The OpenAPI document (`GET /openapi.json`): served without a token, OpenAPI
//! 3.1 with the bearer scheme on every `/v1/` operation, and the same routes as
//! the router, in both directions: read off the router itself and tried live.

use std::collections::BTreeSet;

use herald::api::{Routes, routes};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TOKEN, TestApp};

/// The methods an OpenAPI path item may hold, as `MethodRouter`'s fields name them.
const METHODS: [&str; 8] = [
    "get", "head", "delete", "options", "patch", "post", "put", "trace",
];

/// `(METHOD, path)` of every operation in `document`.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

/// `(METHOD, path)` of every route of an axum `Router`, read off its `Debug`
/// form (axum has no other way to list them): the path router's `routes`
/// (`RouteId(n): MethodRouter(MethodRouter { get: .., post: .. })`) joined to
/// its `node`'s paths (`RouteId(n): "/path"`). A method routed as `None` is
/// absent; `head` is left out, since axum answers HEAD with a GET handler. A
/// whole-service route (`route_service`, any method) becomes `(ANY, path)`.
fn router_operations(debug: &str) -> BTreeSet<(String, String)> {
    let path_router = debug
        .split(", fallback_router:")
        .next()
        .expect("a Router's Debug starts with its path router");
    let mut methods = std::collections::BTreeMap::new();
    let mut paths = std::collections::BTreeMap::new();
    for chunk in path_router.split("RouteId(").skip(1) {
        let (id, rest) = chunk.split_once("): ").expect("RouteId(n): ...");
        if let Some(path) = rest.strip_prefix('"') {
            let path = path.split('"').next().expect("a quoted path");
            paths.insert(id.to_owned(), path.to_owned());
        } else if rest.starts_with("MethodRouter(") {
            let routed: Vec<String> = METHODS
                .iter()
                .filter(|m| **m != "head")
                .filter(|m| {
                    let field = format!(" {m}: ");
                    let at = rest.find(&field).expect("every method is a field");
                    !rest[at + field.len()..].starts_with("None")
                })
                .map(|m| m.to_uppercase())
                .collect();
            methods.insert(id.to_owned(), routed);
        } else {
            methods.insert(id.to_owned(), vec!["ANY".to_owned()]);
        }
    }
    assert_eq!(
        methods.keys().collect::<Vec<_>>(),
        paths.keys().collect::<Vec<_>>(),
        "every route id has a path: axum's Debug format changed? {debug}"
    );
    methods
        .into_iter()
        .flat_map(|(id, methods)| {
            let path = paths[&id].clone();
            methods.into_iter().map(move |m| (m, path.clone()))
        })
        .collect()
}

#[test]
fn every_route_of_the_router_is_in_the_openapi_document_and_back() {
    let (router, document) = routes(Routes::All);
    let document = serde_json::to_value(&document).unwrap();
    let routed = router_operations(&format!("{router:?}"));
    let documented = operations(&document);
    // The reader itself: it must see the routes DESIGN names, or it reads nothing.
    for known in [
        ("POST", "/v1/events"),
        ("GET", "/healthz"),
        ("DELETE", "/v1/subscriptions/{name}"),
    ] {
        assert!(
            routed.contains(&(known.0.to_owned(), known.1.to_owned())),
            "the router reader missed {known:?}: {routed:?}"
        );
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes the OpenAPI document lacks: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in the document the router lacks: {unrouted:?}"
    );
}

#[test]
fn the_router_reader_sees_a_route_added_outside_the_table() {
    // What the consistency test guards against: a plain axum route, no operation.
    let (router, _) = routes(Routes::All);
    let router = router.route("/v1/extra", axum::routing::get(|| async { "" }));
    let routed = router_operations(&format!("{router:?}"));
    assert!(routed.contains(&("GET".to_owned(), "/v1/extra".to_owned())));
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let document: Value = response.json().await.unwrap();
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": "`api.token` of the configuration"})
    );
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][method.to_lowercase()];
        if path.starts_with("/v1/") {
            assert_eq!(
                operation["security"],
                json!([{"bearer": []}]),
                "{method} {path}"
            );
            assert_eq!(
                operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path}"
            );
        } else {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} needs no token"
            );
        }
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(document["paths"].get(path).is_some(), "{path}");
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_its_handler_and_no_other_method_does() {
    let app = TestApp::spawn().await;
    let document: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented = operations(&document);
    for (method, path) in &documented {
        // A name no subscription has: reads are 404s, writes 422s, nothing changes.
        let url = app.url(&path.replace("{name}", "openapi-probe"));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), &url)
            .bearer_auth(TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status, 405,
            "{method} {path} is documented, not routed: {body}"
        );
        assert_ne!(
            body["error"]["message"], "no such route",
            "{method} {path} is documented, not routed"
        );
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = app.url(&path.replace("{name}", "openapi-probe"));
        let response = app
            .http
            .request(Method::TRACE, &url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "TRACE {path}");
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let allowed: BTreeSet<String> = allow
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m != "HEAD")
            .collect();
        let expected: BTreeSet<String> = documented
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(allowed, expected, "methods of {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{path}");
    }
}
