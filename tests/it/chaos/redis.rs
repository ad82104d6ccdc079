//! R1–R3: Redis killed (data kept), restarted empty, and a change notice
//! missed while a worker's pub/sub connection was away. Each uses a Redis of
//! the test's own.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{
    TOKEN, metric_sum,
    proxy::{FaultProxy, Mode},
    receiver::Receiver,
    services::PrivateRedis,
};

async fn readyz(api: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{api}/readyz")).await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Polls `/readyz` of `api` until `missing` lists `what` (or lists nothing, for `None`).
async fn wait_readiness(api: &str, what: Option<&str>) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(api).await;
        let missing = body["missing"].as_array().cloned().unwrap_or_default();
        let done = match what {
            Some(what) => status == 503 && missing.contains(&json!(what)),
            None => status == 200,
        };
        if done {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/readyz never said {what:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(api: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{api}/v1/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// R1 (data kept) and R2 (restarted empty): deliveries go on from the snapshot
/// while Redis is away; an empty Redis is never adopted; nothing is skipped.
#[tokio::test]
async fn r1_r2_redis_killed_then_restarted_with_and_without_its_data() {
    for (scenario, persistent) in [("r1", true), ("r2", false)] {
        let mut redis = PrivateRedis::start(persistent).await;
        let mut lab = Lab::new().redis(redis.url());
        let worker = lab.start_worker().await;
        let receiver = Receiver::start([]).await;
        lab.subscribe(hook(scenario, &receiver)).await;
        let ledger = Ledger::new(scenario, &[scenario]);
        let producer = load::spawn(
            &lab.amqp_url,
            &lab.prefix,
            &ledger,
            0..1_000,
            Some(100.0),
            None,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;

        redis.kill();
        let noticed = wait_readiness(&lab.api(), Some("redis")).await;
        let metrics = lab.metrics(worker).await;
        assert!(metrics.contains("herald_redis_connected 0"));
        let write = create(&lab.api(), hook("another", &receiver)).await;
        assert_eq!(write, 503, "a subscription write without Redis");
        tokio::time::sleep(Duration::from_secs(5)).await;
        redis.boot().await;
        let healed = if persistent {
            wait_readiness(&lab.api(), None).await
        } else {
            // Adopting an empty set would drop every event: herald keeps its
            // snapshot and says so until the subscriptions are written again.
            wait_readiness(&lab.api(), Some("subscription_store_reset")).await
        };
        producer.await.unwrap();
        lab.settle(&ledger, &[&receiver], Duration::from_secs(60))
            .await
            .check(0);
        let metrics = lab.metrics(worker).await;
        println!(
            "{scenario}: Redis loss noticed by /readyz in {noticed:?}, restart (data kept: {persistent}) seen in {healed:?}"
        );
        assert!(metrics.contains("herald_deliveries_total{outcome=\"skipped\"} 0"));
        assert!(metrics.contains("herald_redis_connected 1"));
        lab.assert_queues_empty().await;
        lab.assert_no_panics();
    }
}

/// R3: a subscription changed while one worker's Redis connections are cut:
/// its snapshot still converges (the change counter is polled every second),
/// and the snapshot age stays bounded.
#[tokio::test]
async fn r3_a_missed_change_notice_is_caught_by_the_counter() {
    let redis = PrivateRedis::start(false).await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], redis.port).into()).await;
    let mut lab = Lab::new().redis(redis.url());
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    lab.subscribe(hook("r3", &receiver)).await;
    lab.redis_url = format!("redis://{}/", proxy.addr());
    let behind = lab.start_worker().await;
    lab.redis_url = redis.url();

    proxy.set(Mode::Refuse);
    proxy.reset_all();
    let patched = reqwest::Client::new()
        .patch(format!("{}/v1/subscriptions/r3", lab.api()))
        .bearer_auth(TOKEN)
        .json(&json!({"headers": {"x-r3": "changed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Mode::Pass);
    let healed = Instant::now();
    lab.wait_snapshots().await;
    let converged = healed.elapsed();
    let metrics = lab.metrics(behind).await;
    let age = metric_sum(&metrics, |l| {
        l.starts_with("herald_subscription_snapshot_age_seconds ")
    })
    .expect("the snapshot age metric");
    println!("r3: converged {converged:?} after the connection came back; snapshot age {age} s");
    assert!(converged < Duration::from_secs(5));
    assert!(age < 5.0, "snapshot age {age}");
    lab.assert_no_panics();
}
