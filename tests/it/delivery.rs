use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, metric_sum, receiver::Receiver, subscription};

#[tokio::test]
async fn an_amqp_event_is_delivered_once_signed_with_the_exact_headers() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription(subscription("ci", &hook.url(), &["deployment.*"]))
        .await;

    app.publish(json!({
        "id": "evt-1", "type": "deployment.failed", "source": "argo",
        "time": "2026-11-26T10:00:00Z", "labels": {"env": "prod"}, "data": {"service": "api"}
    }))
    .await;

    let request = hook.next_request(Duration::from_secs(10)).await;
    assert!(
        request.verify(&secret),
        "signature must verify with the standardwebhooks crate"
    );
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("user-agent"),
        concat!("herald/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(request.header("webhook-id"), "evt-1");
    assert_eq!(request.header("herald-event-type"), "deployment.failed");
    assert_eq!(request.header("herald-attempt"), "1");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ts: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((now - ts).abs() < 30, "timestamp is the attempt time");
    assert_eq!(
        request.json(),
        json!({"id": "evt-1", "type": "deployment.failed", "source": "argo",
               "time": "2026-11-26T10:00:00Z", "labels": {"env": "prod"}, "data": {"service": "api"}})
    );
    hook.assert_quiet(Duration::from_millis(500)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_deliveries_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_events_received_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_event_fans_out_to_three_subscriptions_with_their_own_secrets() {
    let app = TestApp::spawn().await;
    let hooks = [
        Receiver::start([]).await,
        Receiver::start([]).await,
        Receiver::start([]).await,
    ];
    let mut secrets = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let mut body = subscription(&format!("sub-{i}"), &hook.url(), &["build.done"]);
        body["headers"] = json!({"x-team": format!("team-{i}")});
        secrets.push(app.create_subscription(body).await);
    }
    app.publish(json!({"type": "build.done", "id": "b-1"}))
        .await;
    for (i, hook) in hooks.iter().enumerate() {
        let request = hook.next_request(Duration::from_secs(10)).await;
        assert!(request.verify(&secrets[i]));
        assert!(
            !request.verify(&secrets[(i + 1) % 3]),
            "each subscription signs with its own secret"
        );
        assert_eq!(request.header("x-team"), format!("team-{i}"));
        assert_eq!(request.header("webhook-id"), "b-1");
    }
}

#[tokio::test]
async fn the_method_and_a_per_subscription_timeout_are_used() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut body = subscription("put-hook", &hook.url(), &["*"]);
    body["method"] = json!("PUT");
    app.create_subscription(body).await;
    app.publish(json!({"type": "a.b"})).await;
    assert_eq!(
        hook.next_request(Duration::from_secs(10)).await.method,
        "PUT"
    );
}

#[tokio::test]
async fn webhooks_disabled_events_reach_nobody() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("all", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "test.end", "webhooks_disabled": true}))
        .await;
    app.publish(json!({"type": "test.end", "id": "after"}))
        .await;
    assert_eq!(
        hook.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "after"
    );
    hook.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_disabled_subscription_gets_a_dead_letter_instead_of_a_request() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut body = subscription("paused", &hook.url(), &["*"]);
    body["enabled"] = json!(false);
    app.create_subscription(body).await;
    app.publish(json!({"type": "a.b", "id": "e-paused"})).await;
    let dead = app.take_dead(1, Duration::from_secs(10)).await;
    assert_eq!(
        dead[0].header("x-herald-reason").as_deref(),
        Some("subscription_disabled")
    );
    assert_eq!(
        dead[0].header("x-herald-subscription").as_deref(),
        Some("paused")
    );
    assert_eq!(dead[0].json()["id"], "e-paused");
    hook.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn quorum_queues_deliver_end_to_end() {
    let app = TestApp::spawn_with(|c| c.amqp.queue_type = herald::config::QueueType::Quorum).await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription(subscription("q", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "quorum.works"})).await;
    assert!(
        hook.next_request(Duration::from_secs(10))
            .await
            .verify(&secret)
    );
}

#[tokio::test]
async fn a_busy_worker_waits_for_a_slot_and_shares_only_an_event_wider_than_itself() {
    let app = TestApp::spawn_with(|c| c.worker.concurrency = 2.try_into().unwrap()).await;
    let hook = Receiver::start([]).await;
    hook.always(crate::support::receiver::Reply::ok().after(Duration::from_millis(100)));
    app.create_subscription(subscription(
        "narrow",
        &format!("{}/narrow", hook.url()),
        &["narrow.*"],
    ))
    .await;
    for name in ["wide-1", "wide-2", "wide-3"] {
        let url = format!("{}/{name}", hook.url());
        app.create_subscription(subscription(name, &url, &["wide.*"]))
            .await;
    }
    let handed_off = |metrics: &str| {
        metric_sum(metrics, |l| {
            l.starts_with("herald_fanout_handoffs_total") && l.contains("no_slot")
        })
        .unwrap_or(0.0)
    };
    // One match each, more events than slots: they wait for a slot, every one
    // a first attempt made here.
    for i in 0..5 {
        app.publish(json!({"type": "narrow.a", "id": format!("busy-{i}")}))
            .await;
    }
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let request = hook.next_request(Duration::from_secs(10)).await;
        assert_eq!(request.header("herald-attempt"), "1");
        ids.insert(request.header("webhook-id").to_owned());
    }
    assert_eq!(ids.len(), 5);
    assert_eq!(handed_off(&app.metrics().await), 0.0);
    // Three matches on a worker of two slots: what it cannot start is handed on.
    // (A first event lets the new subscriptions prove fast: until then the cap
    // on unknown endpoints, not the slots, decides.)
    for id in ["wide-warm-up", "wide-event"] {
        app.publish(json!({"type": "wide.a", "id": id})).await;
        let mut paths = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let request = hook.next_request(Duration::from_secs(10)).await;
            assert_eq!(request.header("webhook-id"), id);
            paths.insert(request.path.clone());
        }
        assert_eq!(paths.len(), 3, "{paths:?}");
    }
    assert!(handed_off(&app.metrics().await) >= 1.0);
    hook.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_slow_endpoint_at_its_cap_does_not_delay_the_others() {
    let app = TestApp::spawn_with(|c| {
        c.worker.concurrency = 8.try_into().unwrap();
        c.delivery.max_in_flight_per_subscription = 2.try_into().unwrap();
    })
    .await;
    let slow = Receiver::start([]).await;
    slow.always(crate::support::receiver::Reply::ok().after(Duration::from_millis(1500)));
    let fast = Receiver::start([]).await;
    app.create_subscription(subscription("slow", &slow.url(), &["*"]))
        .await;
    app.create_subscription(subscription("fast", &fast.url(), &["*"]))
        .await;
    let started = std::time::Instant::now();
    for i in 0..6 {
        app.publish(json!({"type": "a.b", "id": format!("iso-{i}")}))
            .await;
    }
    for _ in 0..6 {
        fast.next_request(Duration::from_secs(5)).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the healthy endpoint waited for the slow one: {:?}",
        started.elapsed()
    );
    // The slow endpoint still gets every event, never more than 2 at once.
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..6 {
        ids.insert(
            slow.next_request(Duration::from_secs(15))
                .await
                .header("webhook-id")
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 6);
}
