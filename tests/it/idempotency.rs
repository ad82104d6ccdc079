//! `Idempotency-Key` on `POST /v1/events`: a repeat, to any API replica,
//! gets the first answer and publishes nothing; a reused key with another
//! body is a 422, one still publishing a 409; without Redis it is refused.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{TOKEN, TestApp, receiver::Receiver, services::PrivateRedis, subscription};

async fn post(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let mut request = app.http.post(app.url("/v1/events")).bearer_auth(TOKEN);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotency-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, response.json().await.unwrap())
}

#[tokio::test]
async fn a_repeat_to_another_replica_gets_the_first_answer_and_publishes_nothing() {
    let first = TestApp::spawn().await;
    let (amqp, redis) = (
        first.config.amqp.prefix.clone(),
        first.config.redis.prefix.clone(),
    );
    let second = TestApp::spawn_with(|c| {
        c.amqp.prefix = amqp;
        c.redis.prefix = redis;
    })
    .await;
    let hook = Receiver::start([]).await;
    first
        .create_subscription(subscription("ci", &hook.url(), &["*"]))
        .await;
    second.wait_snapshot_current().await;
    // No id in the events: each publish would make new ones.
    let batch = json!([{"type": "deploy.done"}, {"type": "deploy.done"}]);

    let (status, replayed, answer) = post(&first, Some("order-42"), &batch).await;
    assert_eq!((status, replayed), (202, None), "{answer}");
    let (status, replayed, again) = post(&second, Some("order-42"), &batch).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(
        again, answer,
        "the repeat gets the first answer, ids included"
    );
    for _ in 0..2 {
        hook.next_request(Duration::from_secs(10)).await;
    }
    hook.assert_quiet(Duration::from_secs(1)).await;
    assert_eq!(hook.requests().len(), 2, "the repeat published nothing");

    let other = json!({"type": "deploy.failed"});
    let (status, _, error) = post(&first, Some("order-42"), &other).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["details"][0]["field"], "Idempotency-Key");
    let (status, _, error) = post(&first, Some("not ascii é"), &other).await;
    assert_eq!(status, 422, "{error}");
    let (status, _, fresh) = post(&first, None, &batch).await;
    assert_eq!(status, 202);
    assert_ne!(fresh, answer, "without a key every request publishes");
}

#[tokio::test]
async fn a_key_still_publishing_is_a_conflict_and_without_redis_keys_are_refused() {
    let mut redis = PrivateRedis::start(false).await;
    let url = redis.url();
    let app =
        TestApp::spawn_with(|c| c.redis.url = herald::config::SecretUrl::new(url.clone())).await;
    let event = json!({"type": "deploy.done"});
    // What a replica that is publishing this request right now left in Redis.
    let hash = format!("{:x}", Sha256::digest("in-flight"));
    let body = format!("{:x}", Sha256::digest(serde_json::to_vec(&event).unwrap()));
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:idempotency:{hash}", app.config.redis.prefix);
    let pending = json!({"state": "pending", "body": body}).to_string();
    let () = conn.set_ex(&key, pending, 60).await.unwrap();
    let (status, _, error) = post(&app, Some("in-flight"), &event).await;
    assert_eq!(status, 409, "{error}");

    redis.kill();
    let (status, _, error) = post(&app, Some("while-redis-is-down"), &event).await;
    assert_eq!(status, 503, "{error}");
    let (status, _, reply) = post(&app, None, &event).await;
    assert_eq!(
        status, 202,
        "ingest without a key needs only the broker: {reply}"
    );
}
