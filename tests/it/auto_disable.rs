//! Auto-disable (`delivery.disable_after`): a subscription that fails without a
//! success for that long is disabled; a success stops the clock; the clock
//! lives in Redis and is written only when a subscription has been failing for
//! a moment (a thousandth of `disable_after`, at most 10 s) or stops failing
//! after that.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;

use crate::support::{
    REDIS_URL, TestApp, eventually, metric_sum,
    receiver::{Receiver, Reply},
    subscription,
};

/// Since when `name` has been failing, as Redis holds it.
async fn failing_since(app: &TestApp, name: &str) -> Option<i64> {
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:subscriptions:failing", app.prefix());
    conn.hget(key, name).await.unwrap()
}

#[tokio::test]
async fn a_subscription_failing_for_disable_after_is_disabled_and_counted() {
    let app = TestApp::spawn_with(|c| {
        c.delivery.disable_after = Duration::from_secs(1);
        c.delivery.max_attempts = 50.try_into().unwrap();
        c.delivery.retry_max_delay = Duration::from_millis(300);
    })
    .await;
    let hook = Receiver::start([]).await;
    hook.always(Reply::status(503));
    app.create_subscription(subscription("broken", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"id": "evt-1", "type": "a.b"})).await;

    hook.next_request(Duration::from_secs(5)).await;
    let (http, url) = (app.http.clone(), app.url("/v1/subscriptions/broken"));
    eventually(Duration::from_secs(10), "the subscription disabled", || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let sub: serde_json::Value = http
                .get(&url)
                .bearer_auth(crate::support::TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (sub["enabled"] == false).then_some(())
        })
    })
    .await;
    let metrics = app.metrics().await;
    let disabled = metric_sum(&metrics, |l| {
        l.starts_with(r#"herald_subscriptions_disabled_total{reason="failing"}"#)
    });
    assert_eq!(disabled, Some(1.0), "{metrics}");
    assert_eq!(
        failing_since(&app, "broken").await,
        None,
        "the clock stops with the disable"
    );

    // Its deliveries are kept as dead letters, replayable once it is enabled again.
    let dead = app.take_dead(1, Duration::from_secs(10)).await;
    assert_eq!(
        dead[0].header("x-herald-reason").as_deref(),
        Some("subscription_disabled")
    );
}

#[tokio::test]
async fn a_success_stops_the_clock_and_the_next_failure_starts_it_again() {
    // A failing stretch is written once it has lasted 100 ms.
    let app = TestApp::spawn_with(|c| {
        c.delivery.disable_after = Duration::from_secs(100);
        c.delivery.max_attempts = 1.try_into().unwrap();
    })
    .await;
    let hook = Receiver::start([Reply::status(500), Reply::status(500)]).await;
    app.create_subscription(subscription("wobbly", &hook.url(), &["*"]))
        .await;
    let fail_twice = || async {
        let started = now_millis();
        app.publish(json!({"type": "a.b"})).await;
        app.take_dead(1, Duration::from_secs(10)).await;
        assert_eq!(
            failing_since(&app, "wobbly").await,
            None,
            "one failure is not yet worth a write"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        let second_failure = now_millis();
        app.publish(json!({"type": "a.b"})).await;
        app.take_dead(1, Duration::from_secs(10)).await;
        let since = failing_since(&app, "wobbly")
            .await
            .expect("failing since the first 500");
        assert!(
            (started..second_failure).contains(&since),
            "the stretch starts at the first failure"
        );
        since
    };
    let first = fail_twice().await;

    app.publish(json!({"type": "a.b"})).await;
    hook.next_request(Duration::from_secs(10)).await;
    eventually(
        Duration::from_secs(5),
        "the success clears the clock",
        || {
            let prefix = app.prefix().to_owned();
            Box::pin(async move {
                let redis = redis::Client::open(REDIS_URL).ok()?;
                let mut conn = redis.get_multiplexed_async_connection().await.ok()?;
                let since: Option<i64> = conn
                    .hget(format!("{prefix}:subscriptions:failing"), "wobbly")
                    .await
                    .ok()?;
                since.is_none().then_some(())
            })
        },
    )
    .await;

    hook.always(Reply::status(500));
    let second = fail_twice().await;
    assert!(second > first, "a new clock: {first} -> {second}");
    let (_, sub) = app.api(Method::GET, "/v1/subscriptions/wobbly", None).await;
    assert_eq!(sub["enabled"], true);
}

fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}
