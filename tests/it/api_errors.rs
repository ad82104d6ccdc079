//! What axum would answer by itself (no route, a method the route lacks, a path
//! it cannot decode, a body over the limit read as bytes) is herald's JSON
//! error too, as the OpenAPI document says: found while fuzzing the API
//! against its document (scripts/check-api.sh).

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::support::{TOKEN, TestApp, subscription};

/// The status, and the body as herald's error shape (fails when it is not JSON).
async fn error_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json", "status {status}");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    (status, body)
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/v1/nope", "/v1/subscriptions/a/b/c"] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(response).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn a_method_the_route_lacks_is_a_json_405_that_names_the_allowed_ones() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .delete(app.url("/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let (status, body) = error_of(response).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let response = app.http.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    assert_eq!(error_of(response).await.0, 405);
}

#[tokio::test]
async fn a_name_in_the_path_that_is_not_utf8_is_a_json_400() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/v1/subscriptions/%FF"),
        (Method::DELETE, "/v1/subscriptions/%C3%28"),
        (Method::POST, "/v1/subscriptions/%FF/secret/rotate"),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(response).await;
        assert_eq!(status, 400, "{method} {path}");
        assert_eq!(body["error"]["code"], "bad_request", "{method} {path}");
    }
}

#[tokio::test]
async fn a_test_delivery_body_over_the_limit_is_a_json_413() {
    let app = TestApp::spawn_with(|c| c.limits.max_event_bytes = 1024).await;
    app.create_subscription(subscription("probe", "http://127.0.0.1:9/", &["*"]))
        .await;
    let url = app.url("/v1/subscriptions/probe/test");
    let big = json!({"type": "a.b", "data": "x".repeat(2048)});
    let response = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&big)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_large");
    let response = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_json");
}
