use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, receiver::Receiver, subscription};

#[tokio::test]
async fn subscriptions_can_be_created_read_listed_patched_replaced_and_deleted() {
    let app = TestApp::spawn().await;
    let body = subscription(
        "ci-alerts",
        "https://hooks.example.com/x",
        &["deployment.*"],
    );
    let (status, created) = app
        .api(Method::POST, "/v1/subscriptions", Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(
        created.get("secret").is_none(),
        "no secret in a create reply"
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["method"], "POST");

    let (status, _) = app.api(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 409);

    let (status, got) = app
        .api(Method::GET, "/v1/subscriptions/ci-alerts", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["url"], "https://hooks.example.com/x");

    let (_, list) = app.api(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains("whsec_"),
        "list never shows secrets"
    );

    let (_, secret) = app
        .api(Method::GET, "/v1/subscriptions/ci-alerts/secret", None)
        .await;
    let secret = secret["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let (status, patched) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/ci-alerts",
            Some(json!({"enabled": false, "selector": "env=prod"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["selector"], "env=prod");
    assert_eq!(
        patched["events"],
        json!(["deployment.*"]),
        "a merge patch keeps other fields"
    );

    let (status, replaced) = app
        .api(
            Method::PUT,
            "/v1/subscriptions/ci-alerts",
            Some(json!({"url": "https://other.example.com/", "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["enabled"], true, "a replace starts from defaults");
    assert!(replaced.get("selector").is_none());
    let (_, again) = app
        .api(Method::GET, "/v1/subscriptions/ci-alerts/secret", None)
        .await;
    assert_eq!(
        again["secret"], secret,
        "a replace without a secret keeps the secret"
    );

    let (status, _) = app
        .api(
            Method::PUT,
            "/v1/subscriptions/new-one",
            Some(json!({"url": "https://x.example.com/", "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 201);

    let (status, _) = app
        .api(Method::DELETE, "/v1/subscriptions/ci-alerts", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .api(Method::DELETE, "/v1/subscriptions/ci-alerts", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .api(Method::GET, "/v1/subscriptions/ci-alerts", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_subscriptions_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"url": "https://x.example.com/", "events": ["*"]}),
            "name",
        ),
        (
            json!({"name": "Bad_Name", "url": "https://x.example.com/", "events": ["*"]}),
            "name",
        ),
        (
            json!({"name": "a", "url": "gopher://x", "events": ["*"]}),
            "url",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": []}),
            "events",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": ["ok", "no spaces"]}),
            "events[1]",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": ["*"], "selector": "env in ()"}),
            "selector",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": ["*"], "method": "GET"}),
            "method",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": ["*"], "secret": "nope"}),
            "secret",
        ),
        (
            json!({"name": "a", "url": "https://x.example.com/", "events": ["*"], "headers": {"bad header": "x"}}),
            "headers.bad header",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = app
            .api(Method::POST, "/v1/subscriptions", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body} -> {reply}");
        assert_eq!(
            reply["error"]["details"][0]["field"], field,
            "{body} -> {reply}"
        );
    }
    let (status, reply) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/missing",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
}

#[tokio::test]
async fn a_given_secret_is_kept_and_rotation_signs_with_both_for_a_day() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut body = subscription("rot", &hook.url(), &["*"]);
    body["secret"] = json!(given);
    assert_eq!(app.create_subscription(body).await, given);

    let (status, rotated) = app
        .api(Method::POST, "/v1/subscriptions/rot/secret/rotate", None)
        .await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, given);
    assert_eq!(rotated["previous_secret"], given);
    app.wait_snapshot_current().await;

    app.publish(json!({"type": "a.b"})).await;
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    assert!(request.verify(&new_secret), "the new secret verifies");
    assert!(request.verify(given), "the previous secret still verifies");
}

#[tokio::test]
async fn changes_reach_the_running_worker_within_a_second() {
    let app = TestApp::spawn().await;
    let old = Receiver::start([]).await;
    let new = Receiver::start([]).await;
    app.create_subscription(subscription("moving", &old.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "one"})).await;
    assert_eq!(
        old.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "one"
    );

    let started = std::time::Instant::now();
    let (status, _) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/moving",
            Some(json!({"url": new.url()})),
        )
        .await;
    assert_eq!(status, 200);
    app.wait_snapshot_current().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "seen after {:?}",
        started.elapsed()
    );
    app.publish(json!({"type": "a.b", "id": "two"})).await;
    assert_eq!(
        new.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "two"
    );

    let started = std::time::Instant::now();
    let (status, _) = app
        .api(Method::DELETE, "/v1/subscriptions/moving", None)
        .await;
    assert_eq!(status, 204);
    app.wait_snapshot_current().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "seen after {:?}",
        started.elapsed()
    );
    app.publish(json!({"type": "a.b", "id": "three"})).await;
    new.assert_quiet(Duration::from_millis(500)).await;
    old.assert_quiet(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() {
    let app = TestApp::spawn().await;
    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz: serde_json::Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["ready"], true);
    assert_eq!(readyz["checks"]["broker"], "ok");
    assert_eq!(readyz["checks"]["redis"], "ok");
    assert_eq!(readyz["checks"]["snapshot"], "ok");
    let metrics = app.metrics().await;
    for name in [
        "herald_broker_connected 1",
        "herald_redis_connected 1",
        "herald_subscriptions 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn a_retry_waiting_in_a_delay_queue_across_a_rotation_is_signed_with_both_secrets() {
    let app = TestApp::spawn_with(|c| c.delivery.retry_initial = Duration::from_secs(1)).await;
    let hook = Receiver::start([crate::support::receiver::Reply::status(500)]).await;
    let old = app
        .create_subscription(subscription("rotating", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "across"})).await;
    let first = hook.next_request(Duration::from_secs(10)).await;
    assert!(first.verify(&old));
    assert_eq!(first.header("webhook-signature").split(' ').count(), 1);

    // The retry now waits in a delay queue; rotate meanwhile.
    let (status, rotated) = app
        .api(
            Method::POST,
            "/v1/subscriptions/rotating/secret/rotate",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let new = rotated["secret"].as_str().unwrap().to_owned();
    app.wait_snapshot_current().await;

    let second = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(second.header("herald-attempt"), "2");
    assert_eq!(second.header("webhook-id"), "across");
    assert!(second.verify(&new), "the new secret verifies the retry");
    assert!(second.verify(&old), "the previous secret still verifies it");
}
