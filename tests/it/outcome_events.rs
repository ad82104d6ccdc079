//! Outcome events (`outcomes.enabled`) on the real broker: one message per
//! attempt outcome to `<p>.outcomes` under its routing key, one when herald
//! disables a subscription, and deliveries that go on when the exchange cannot
//! take them.

use std::time::Duration;

use lapin::{
    options::{ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use serde_json::{Value, json};

use crate::support::{
    TestApp, eventually, metric_sum,
    receiver::{Receiver, Reply},
    subscription,
};

/// A queue of the test's own bound to `<p>.outcomes` with `pattern`.
async fn bind(app: &TestApp, pattern: &str) -> String {
    let queue = format!("{}.outcomes-test.{pattern}", app.prefix());
    let channel = app.amqp.conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            format!("{}.outcomes", app.prefix()).as_str().into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    queue
}

async fn events(app: &TestApp, queue: &str, n: usize) -> Vec<Value> {
    let got = app.amqp.take(queue, n, Duration::from_secs(15)).await;
    got.iter().map(|m| m.json()).collect()
}

#[tokio::test]
async fn each_attempt_outcome_is_announced_under_its_routing_key() {
    let app = TestApp::spawn_with(|c| c.outcomes.enabled = true).await;
    let attempts = bind(&app, "delivery.*").await;
    let disabled = bind(&app, "subscription.disabled").await;
    let flaky = Receiver::start([Reply::status(500).header("x-why", "busy")]).await;
    app.create_subscription(subscription("flaky", &flaky.url(), &["flaky.*"]))
        .await;
    let gone = Receiver::start([Reply::status(410)]).await;
    app.create_subscription(subscription("gone", &gone.url(), &["gone.*"]))
        .await;

    app.publish(json!({"id": "evt-f", "type": "flaky.x"})).await;
    let seen = events(&app, &attempts, 2).await;
    assert_eq!(seen[0]["outcome"], "retrying", "{seen:?}");
    assert_eq!(seen[0]["event_id"], "evt-f");
    assert_eq!(seen[0]["event_type"], "flaky.x");
    assert_eq!(seen[0]["subscription"], "flaky");
    assert_eq!(seen[0]["attempt"], 1);
    assert_eq!(seen[0]["status"], 500);
    assert_eq!(seen[0]["error"], "HTTP 500");
    assert!(seen[0]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(seen[1]["outcome"], "succeeded");
    assert_eq!(seen[1]["attempt"], 2);
    assert_eq!(seen[1]["status"], 200);
    assert_eq!(seen[1]["error"], Value::Null);

    app.publish(json!({"id": "evt-g", "type": "gone.x"})).await;
    let dead = events(&app, &attempts, 1).await;
    assert_eq!(dead[0]["outcome"], "dead");
    assert_eq!(dead[0]["reason"], "gone");
    assert_eq!(dead[0]["status"], 410);
    let off = events(&app, &disabled, 1).await;
    assert_eq!(off[0]["outcome"], "disabled");
    assert_eq!(off[0]["subscription"], "gone");
    assert_eq!(off[0]["reason"], "gone");
}

#[tokio::test]
async fn deliveries_go_on_when_the_outcomes_exchange_cannot_take_them() {
    let app = TestApp::spawn_with(|c| c.outcomes.enabled = true).await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("steady", &hook.url(), &["*"]))
        .await;
    let channel = app.amqp.conn.create_channel().await.unwrap();
    channel
        .exchange_delete(
            format!("{}.outcomes", app.prefix()).as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    for i in 0..10 {
        app.publish(json!({"id": format!("evt-{i}"), "type": "a.b"}))
            .await;
    }
    for _ in 0..10 {
        hook.next_request(Duration::from_secs(10)).await;
    }
    let (http, url) = (app.http.clone(), app.url("/metrics"));
    eventually(
        Duration::from_secs(10),
        "lost outcome events counted",
        || {
            let (http, url) = (http.clone(), url.clone());
            Box::pin(async move {
                let text = http.get(&url).send().await.ok()?.text().await.ok()?;
                let failed = metric_sum(&text, |l| {
                    l.starts_with("herald_outcome_events_total{result=\"failed\"}")
                })?;
                (failed > 0.0).then_some(())
            })
        },
    )
    .await;
}
