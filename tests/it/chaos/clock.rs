//! T1–T2: signatures under retries: each attempt is signed at its own time,
//! and a rotation during a retry wait signs with both secrets.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::{
    lab::{Lab, hook},
    load::Publisher,
};
use crate::support::receiver::{Receiver, Reply};

/// T1: an event stamped 10 minutes ago, delivered on its third attempt: the
/// signature verifies with the reference library at arrival (the timestamp is
/// the attempt's, not the event's) and the id is the same on every attempt.
#[tokio::test]
async fn t1_old_events_are_signed_at_attempt_time() {
    let mut lab = Lab::new();
    lab.start_worker().await;
    let receiver = Receiver::start([Reply::status(500), Reply::status(500)]).await;
    let secret = lab.subscribe(hook("t1", &receiver)).await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let time = past
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"id": "t1-old", "type": "chaos.test", "time": time}).to_string();
    Publisher::new(&lab.amqp_url, &lab.prefix)
        .publish("chaos.test", body.as_bytes())
        .await;
    for attempt in 1..=3 {
        let request = receiver.next_request(Duration::from_secs(10)).await;
        assert_eq!(request.header("herald-attempt"), attempt.to_string());
        assert_eq!(request.header("webhook-id"), "t1-old");
        assert!(request.verify(&secret), "attempt {attempt} does not verify");
        let stamped: u64 = request.header("webhook-timestamp").parse().unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(stamped) <= 5, "stamped {stamped}, now {now}");
    }
    println!("t1: an event from 10 minutes ago verified on attempts 1-3");
    lab.assert_no_panics();
}

/// T2: the secret rotated while the delivery waits in a delay queue: the
/// retry verifies with the old secret and with the new one.
#[tokio::test]
async fn t2_rotation_during_a_retry_signs_with_both_secrets() {
    let mut lab = Lab::new()
        .env("HERALD__DELIVERY__RETRY_INITIAL", "2s")
        .env("HERALD__DELIVERY__RETRY_MAX_DELAY", "3s");
    lab.start_worker().await;
    let receiver = Receiver::start([Reply::status(500)]).await;
    let old = lab.subscribe(hook("t2", &receiver)).await;
    let body = json!({"id": "t2-rotated", "type": "chaos.test"}).to_string();
    Publisher::new(&lab.amqp_url, &lab.prefix)
        .publish("chaos.test", body.as_bytes())
        .await;
    let first = receiver.next_request(Duration::from_secs(10)).await;
    assert!(first.verify(&old));
    let rotated = lab
        .call(reqwest::Method::POST, "/v1/subscriptions/t2/secret/rotate")
        .await;
    let new = rotated["secret"].as_str().unwrap();
    assert_eq!(rotated["previous_secret"], old);
    lab.wait_snapshots().await;
    let retry = receiver.next_request(Duration::from_secs(10)).await;
    assert_eq!(retry.header("herald-attempt"), "2");
    assert!(
        retry.verify(&old),
        "the retry does not verify with the old secret"
    );
    assert!(
        retry.verify(new),
        "the retry does not verify with the new secret"
    );
    println!("t2: the retry after a rotation verified with both secrets");
    lab.assert_no_panics();
}
