use std::time::Duration;

use serde_json::json;

use crate::support::{
    TestApp,
    receiver::{Receiver, Reply},
    subscription,
};

#[tokio::test]
async fn a_500_then_503_then_200_is_three_attempts_with_one_id_and_growing_gaps() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(500), Reply::status(503), Reply::ok()]).await;
    let secret = app
        .create_subscription(subscription("flaky", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "deployment.failed", "id": "retry-me"}))
        .await;

    let first = hook.next_request(Duration::from_secs(10)).await;
    let second = hook.next_request(Duration::from_secs(10)).await;
    let third = hook.next_request(Duration::from_secs(10)).await;
    for (i, r) in [&first, &second, &third].into_iter().enumerate() {
        assert_eq!(r.header("webhook-id"), "retry-me");
        assert_eq!(r.header("herald-attempt"), (i + 1).to_string());
        assert!(r.verify(&secret), "attempt {} is signed", i + 1);
    }
    let gap1 = second.received_at - first.received_at;
    let gap2 = third.received_at - second.received_at;
    // retry_initial 200ms, x2, +-20 % jitter: 160..240ms then 320..480ms. A busy machine
    // only ever adds to a wait, so the bounds are floors: the second wait's floor is above
    // the first wait's ceiling, which is what "growing" means here.
    assert!(
        gap1 >= Duration::from_millis(155),
        "first retry waited {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(315),
        "second retry waited {gap2:?} (first {gap1:?}): the backoff did not grow"
    );
    hook.assert_quiet(Duration::from_millis(800)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_deliveries_total{outcome=\"retry\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_deliveries_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let app = TestApp::spawn().await;
    let target = Receiver::start([]).await;
    let hook = Receiver::start([
        Reply::status(302).header("location", &target.url()),
        Reply::ok(),
    ])
    .await;
    app.create_subscription(subscription("moved", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b"})).await;
    hook.expect_attempts(&[1, 2]).await;
    target.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn exhausted_attempts_end_in_the_dead_queue_with_every_header() {
    let app = TestApp::spawn_with(|c| c.delivery.max_attempts = 3.try_into().unwrap()).await;
    let hook = Receiver::start([]).await;
    hook.always(Reply::status(500));
    app.create_subscription(subscription("down", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "doomed"})).await;

    let dead = app.take_dead(1, Duration::from_secs(15)).await;
    let letter = &dead[0];
    assert_eq!(
        letter.header("x-herald-reason").as_deref(),
        Some("max_attempts")
    );
    assert_eq!(
        letter.header("x-herald-last-status").as_deref(),
        Some("500")
    );
    assert_eq!(
        letter.header("x-herald-last-error").as_deref(),
        Some("HTTP 500")
    );
    assert_eq!(letter.header("x-herald-attempts").as_deref(), Some("3"));
    assert_eq!(
        letter.header("x-herald-subscription").as_deref(),
        Some("down")
    );
    assert_eq!(letter.json()["id"], "doomed");
    for attempt in 1..=3 {
        assert_eq!(
            hook.next_request(Duration::from_secs(1))
                .await
                .header("herald-attempt"),
            attempt.to_string()
        );
    }
    hook.assert_quiet(Duration::from_millis(800)).await;
    assert_eq!(hook.requests().len(), 3, "nothing after the last attempt");
}

#[tokio::test]
async fn a_per_subscription_max_attempts_overrides_the_default() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    hook.always(Reply::status(500));
    let mut body = subscription("once", &hook.url(), &["*"]);
    body["max_attempts"] = json!(1);
    app.create_subscription(body).await;
    app.publish(json!({"type": "a.b"})).await;
    let dead = app.take_dead(1, Duration::from_secs(10)).await;
    assert_eq!(dead[0].header("x-herald-attempts").as_deref(), Some("1"));
}

#[tokio::test]
async fn a_410_dead_letters_and_disables_the_subscription() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(410)]).await;
    app.create_subscription(subscription("gone", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "first"})).await;

    let dead = app.take_dead(1, Duration::from_secs(10)).await;
    assert_eq!(dead[0].header("x-herald-reason").as_deref(), Some("gone"));
    assert_eq!(
        dead[0].header("x-herald-last-status").as_deref(),
        Some("410")
    );
    let (_, sub) = app
        .api(reqwest::Method::GET, "/v1/subscriptions/gone", None)
        .await;
    assert_eq!(sub["enabled"], false);

    // Later events are dead-lettered as subscription_disabled, not sent.
    app.wait_snapshot_current().await;
    app.publish(json!({"type": "a.b", "id": "second"})).await;
    let dead = app.take_dead(1, Duration::from_secs(10)).await;
    assert_eq!(
        dead[0].header("x-herald-reason").as_deref(),
        Some("subscription_disabled")
    );
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn retry_after_on_a_503_is_honoured() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(503).retry_after(1), Reply::ok()]).await;
    app.create_subscription(subscription("busy", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b"})).await;
    let first = hook.next_request(Duration::from_secs(10)).await;
    let second = hook.next_request(Duration::from_secs(10)).await;
    let gap = second.received_at - first.received_at;
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured, retried after {gap:?}"
    );
    assert_eq!(second.header("herald-attempt"), "2");
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let app = TestApp::spawn_with(|c| c.delivery.timeout = Duration::from_millis(300)).await;
    let hook = Receiver::start([Reply::ok().after(Duration::from_secs(2)), Reply::ok()]).await;
    app.create_subscription(subscription("slow", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b"})).await;
    hook.expect_attempts(&[1, 2]).await;
}
