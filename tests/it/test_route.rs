use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{
    TestApp,
    receiver::{Receiver, Reply},
    subscription,
};

#[tokio::test]
async fn the_test_route_sends_one_signed_sample_now_and_enqueues_nothing() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::ok().header("x-answer", "yes")]).await;
    let secret = app
        .create_subscription(subscription("probe", &hook.url(), &["deployment.*"]))
        .await;

    let (status, reply) = app
        .api(Method::POST, "/v1/subscriptions/probe/test", None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["status"], 200);
    assert!(reply["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(reply["error"].is_null());
    let request = hook.next_request(Duration::from_secs(5)).await;
    assert!(request.verify(&secret));
    assert_eq!(request.header("herald-event-type"), "herald.test");
    assert_eq!(
        request.json()["type"],
        "herald.test",
        "the type need not match the subscription"
    );

    // The body's envelope is sent instead of the sample.
    let (_, reply) = app
        .api(
            Method::POST,
            "/v1/subscriptions/probe/test",
            Some(json!({"type": "deployment.failed", "id": "given"})),
        )
        .await;
    assert_eq!(reply["ok"], true);
    assert_eq!(
        hook.next_request(Duration::from_secs(5))
            .await
            .header("webhook-id"),
        "given"
    );
    hook.assert_quiet(Duration::from_millis(300)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_deliveries_total{outcome=\"success\"} 0"),
        "nothing counted:\n{metrics}"
    );
}

#[tokio::test]
async fn the_test_route_reports_failures_without_retrying() {
    let app = TestApp::spawn_with(|c| c.delivery.timeout = Duration::from_millis(300)).await;
    let hook = Receiver::start([Reply::status(500)]).await;
    hook.always(Reply::ok().after(Duration::from_secs(2)));
    app.create_subscription(subscription("failing", &hook.url(), &["*"]))
        .await;

    let (_, reply) = app
        .api(Method::POST, "/v1/subscriptions/failing/test", None)
        .await;
    assert_eq!(
        (reply["ok"].clone(), reply["status"].clone()),
        (json!(false), json!(500)),
        "{reply}"
    );

    let (_, reply) = app
        .api(Method::POST, "/v1/subscriptions/failing/test", None)
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["status"].is_null());
    assert_eq!(reply["error"], "timed out");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (status, _) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/failing",
            Some(json!({"url": format!("http://{closed}/")})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, reply) = app
        .api(Method::POST, "/v1/subscriptions/failing/test", None)
        .await;
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed"),
        "{reply}"
    );

    let (status, _) = app
        .api(Method::POST, "/v1/subscriptions/missing/test", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_test_route_uses_the_same_ssrf_guard_as_delivery() {
    let app = TestApp::spawn_with(|c| c.delivery.allow_private_targets = false).await;
    let hook = Receiver::start([]).await;
    let url = hook.url().replace("127.0.0.1", "localhost");
    app.create_subscription(subscription("guarded", &url, &["*"]))
        .await;
    let (_, reply) = app
        .api(Method::POST, "/v1/subscriptions/guarded/test", None)
        .await;
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("forbidden target"),
        "{reply}"
    );
    hook.assert_quiet(Duration::from_millis(200)).await;
}
