use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, receiver::Receiver, subscription};

#[tokio::test]
async fn malformed_messages_go_to_rejected_with_a_reason_and_the_next_event_is_delivered() {
    let app = TestApp::spawn_with(|c| c.limits.max_event_bytes = 4096).await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("all", &hook.url(), &["*"]))
        .await;

    let bad: [(&[u8], &str); 4] = [
        (b"not json at all", "body"),
        (br#"{"data": {}}"#, "type: required"),
        (br#"{"type": "Bad Type"}"#, "type:"),
        (br#"{"type": "a.b", "time": "yesterday"}"#, "time:"),
    ];
    for (body, _) in &bad {
        app.amqp.publish_event("garbage", body).await;
    }
    let oversized = json!({"type": "a.b", "data": "x".repeat(5000)}).to_string();
    app.amqp.publish_event("a.b", oversized.as_bytes()).await;
    app.publish(json!({"type": "a.b", "id": "good-one"})).await;

    assert_eq!(
        hook.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "good-one"
    );
    let rejected = app.take("rejected", 5, Duration::from_secs(10)).await;
    // Handled concurrently, so matched by body rather than by order; the body is kept as sent.
    let error_for = |body: &[u8]| {
        let message = rejected
            .iter()
            .find(|m| m.body == body)
            .expect("every bad message is in rejected");
        message.header("x-herald-error").unwrap()
    };
    for (body, reason) in &bad {
        let error = error_for(body);
        assert!(
            error.contains(reason),
            "{error:?} should mention {reason:?}"
        );
    }
    assert!(error_for(oversized.as_bytes()).contains("max_event_bytes"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_events_rejected_total"),
        "{metrics}"
    );
}
