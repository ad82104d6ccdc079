//! Isolation that holds at any size: a slow endpoint keeps at most a share of a
//! worker whatever `worker.concurrency` and the cap are; a `Retry-After` slows
//! the whole subscription; a `rate_limit` holds across workers.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    TestApp, metric_sum,
    receiver::{Receiver, Reply},
    subscription,
};

/// Publishes events `ids` of type `<kind>.x` with ids `<kind>-<i>`.
async fn publish(app: &TestApp, kind: &str, ids: std::ops::Range<usize>) {
    for i in ids {
        app.publish(json!({"id": format!("{kind}-{i}"), "type": format!("{kind}.x")}))
            .await;
    }
}

/// How long `n` events to `healthy` take from publish to the last arrival.
async fn healthy_deliveries_take(app: &TestApp, healthy: &Receiver, n: usize) -> Duration {
    let started = Instant::now();
    publish(app, "healthy", 0..n).await;
    for _ in 0..n {
        healthy.next_request(Duration::from_secs(10)).await;
    }
    started.elapsed()
}

/// Subscriptions `slow` (events `slow.*`, answered after `slowness`) and
/// `healthy` (`healthy.*`), and their receivers.
async fn slow_and_healthy(app: &TestApp, slowness: Duration) -> (Receiver, Receiver) {
    let slow = Receiver::start([]).await;
    slow.always(Reply::ok().after(slowness));
    let healthy = Receiver::start([]).await;
    app.create_subscription(subscription("slow", &slow.url(), &["slow.*"]))
        .await;
    app.create_subscription(subscription("healthy", &healthy.url(), &["healthy.*"]))
        .await;
    (slow, healthy)
}

#[tokio::test]
async fn a_slow_endpoint_cannot_hold_back_a_healthy_one_at_concurrency_16_with_the_default_cap() {
    let app = TestApp::spawn_with(|c| {
        c.worker.concurrency = 16.try_into().unwrap();
        c.delivery.timeout = Duration::from_secs(15);
        c.delivery.max_in_flight_per_subscription = 64.try_into().unwrap();
    })
    .await;
    let (slow, healthy) = slow_and_healthy(&app, Duration::from_secs(5)).await;

    publish(&app, "slow", 0..40).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the slow ones take their places
    let took = healthy_deliveries_take(&app, &healthy, 20).await;
    println!(
        "20 healthy deliveries next to 40 slow ones took {took:?}; the slow endpoint held {} at once",
        slow.max_in_flight()
    );
    assert!(took < Duration::from_secs(2), "held back {took:?}");
    assert!(
        slow.max_in_flight() <= 4,
        "a quarter of 16 slots: {}",
        slow.max_in_flight()
    );
}

#[tokio::test]
async fn a_retry_after_slows_the_whole_subscription() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(429).retry_after(2)]).await;
    app.create_subscription(subscription("busy", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"id": "first", "type": "a.b"})).await;
    let refused = hook.next_request(Duration::from_secs(10)).await;
    for id in ["second", "third"] {
        app.publish(json!({"id": id, "type": "a.b"})).await;
    }
    let mut later = Vec::new();
    for _ in 0..3 {
        later.push(hook.next_request(Duration::from_secs(10)).await);
    }
    for request in &later {
        let waited = request.received_at - refused.received_at;
        assert!(
            waited >= Duration::from_millis(1900),
            "{} went {waited:?} after the 429",
            request.header("webhook-id")
        );
    }
    let metrics = app.metrics().await;
    let parked = metric_sum(&metrics, |l| {
        l.starts_with(r#"herald_parked_total{again="false",reason="retry_after"}"#)
    });
    assert_eq!(parked, Some(2.0), "{metrics}");
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_workers() {
    let first = TestApp::spawn_with(|c| c.metrics.queue_refresh = Duration::from_millis(500)).await;
    let prefix = first.prefix().to_owned();
    let _second = TestApp::spawn_with(|c| {
        c.amqp.prefix = prefix.clone();
        c.redis.prefix = prefix.clone();
        c.metrics.queue_refresh = Duration::from_millis(500);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // each worker has counted the other
    let hook = Receiver::start([]).await;
    let mut body = subscription("limited", &hook.url(), &["*"]);
    body["rate_limit"] = json!(10);
    first.create_subscription(body).await;
    _second.wait_snapshot_current().await;

    for i in 0..40 {
        first
            .publish(json!({"id": format!("evt-{i}"), "type": "a.b"}))
            .await;
    }
    let mut arrivals = Vec::new();
    for _ in 0..40 {
        arrivals.push(hook.next_request(Duration::from_secs(20)).await.received_at);
    }
    arrivals.sort();
    let span = arrivals[39] - arrivals[0];
    // A second's worth at once (5 tokens in each of 2 workers), then 10 a second.
    let busiest = arrivals
        .iter()
        .enumerate()
        .map(|(i, at)| {
            arrivals[i..]
                .iter()
                .take_while(|t| **t - *at < Duration::from_secs(1))
                .count()
        })
        .skip(10)
        .max()
        .unwrap();
    println!(
        "40 deliveries at rate_limit 10/s over 2 workers took {span:?}; at most {busiest} in a second after the first 10"
    );
    assert!(span >= Duration::from_millis(2400), "too fast: {span:?}");
    assert!(span <= Duration::from_secs(8), "too slow: {span:?}");
    assert!(busiest <= 13, "{busiest} in one second");
}

#[tokio::test]
async fn a_task_back_from_a_park_waits_for_a_place_instead_of_another_trip() {
    let first = TestApp::spawn_with(|c| c.worker.concurrency = 8.try_into().unwrap()).await;
    let prefix = first.prefix().to_owned();
    let second = TestApp::spawn_with(|c| {
        c.amqp.prefix = prefix.clone();
        c.redis.prefix = prefix.clone();
        c.worker.concurrency = 8.try_into().unwrap();
    })
    .await;
    let slow = Receiver::start([]).await;
    slow.always(Reply::ok().after(Duration::from_millis(300)));
    first
        .create_subscription(subscription("slowish", &slow.url(), &["*"]))
        .await;
    second.wait_snapshot_current().await;
    for i in 0..40 {
        first
            .publish(json!({"id": format!("evt-{i}"), "type": "a.b"}))
            .await;
    }
    for _ in 0..40 {
        slow.next_request(Duration::from_secs(30)).await;
    }
    let parked = |metrics: &str, again: &str| {
        metric_sum(metrics, |l| {
            l.starts_with(&format!(
                r#"herald_parked_total{{again="{again}",reason="subscription_cap"}}"#
            ))
        })
        .unwrap_or(0.0)
    };
    let (a, b) = (first.metrics().await, second.metrics().await);
    let (once, again) = (
        parked(&a, "false") + parked(&b, "false"),
        parked(&a, "true") + parked(&b, "true"),
    );
    println!(
        "40 tasks to a 300 ms endpoint over 2 workers (2 places each): parked {once} times, again {again} times"
    );
    assert!(once > 0.0, "the cap bound");
    assert!(again <= once / 4.0, "parked {once}, again {again}");
    assert!(slow.max_in_flight() <= 4, "{}", slow.max_in_flight());
}

#[tokio::test]
async fn tasks_waiting_for_a_place_leave_the_slots_to_healthy_subscriptions() {
    let app = TestApp::spawn_with(|c| c.worker.concurrency = 8.try_into().unwrap()).await;
    let (_slow, healthy) = slow_and_healthy(&app, Duration::from_secs(2)).await;
    // Two attempts teach the worker that the endpoint takes 2 s.
    publish(&app, "slow", 0..2).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    // 2 places (a quarter of 8 slots); the rest is parked, back within 2 s
    // (the longest delay queue here), and waits in the worker for a place.
    publish(&app, "slow", 2..32).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let took = healthy_deliveries_take(&app, &healthy, 10).await;
    println!("10 healthy deliveries while slow tasks waited for places took {took:?}");
    assert!(took < Duration::from_millis(1000), "held back {took:?}");
}
