//! Faults on the real services: a worker process SIGKILLed mid-flight, a
//! graceful SIGTERM, and Redis going away (a Redis of the test's own).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use herald::broker::session::{Session, SessionSpec};
use reqwest::Method;
use serde_json::json;

use crate::support::{
    Broker, TOKEN, TestApp, eventually,
    process::Herald,
    receiver::{Receiver, Reply},
    services::PrivateRedis,
    subscription, unique_prefix,
};

/// Every event gets a 2xx at least once; returns the number of duplicate 2xx deliveries.
fn successes(hook: &Receiver) -> BTreeMap<String, usize> {
    let mut ok = BTreeMap::new();
    for r in hook
        .requests()
        .iter()
        .filter(|r| (200..300).contains(&r.status))
    {
        *ok.entry(r.header("webhook-id").to_owned()).or_insert(0) += 1;
    }
    ok
}

#[tokio::test]
async fn a_worker_killed_mid_flight_loses_nothing_after_restart() {
    crate::support::init();
    let prefix = unique_prefix();
    let first = Herald::start(&prefix);
    first.wait_ready().await;

    // The first 40 requests fail (retries in delay queues), the rest are slow (in flight).
    let hook = Receiver::start(std::iter::repeat_n(Reply::status(500), 40)).await;
    hook.always(Reply::ok().after(Duration::from_millis(100)));
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/subscriptions", first.api))
        .bearer_auth(TOKEN)
        .json(&subscription("victim", &hook.url(), &["*"]))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    tokio::time::sleep(Duration::from_millis(500)).await; // snapshot notice

    let broker = Broker::connect(&prefix).await;
    let total = 500;
    let ids: BTreeSet<String> = (0..total).map(|i| format!("k-{i}")).collect();
    for id in &ids {
        broker
            .publish_event(
                "load.test",
                json!({"type": "load.test", "id": id})
                    .to_string()
                    .as_bytes(),
            )
            .await;
    }
    eventually(
        Duration::from_secs(30),
        "some deliveries before the kill",
        || {
            let n = hook.requests().len();
            Box::pin(async move { (n >= 80).then_some(()) })
        },
    )
    .await;
    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL, mid-flight
    first.child.wait().unwrap();
    let before_restart = successes(&hook).len();

    let second = Herald::start(&prefix);
    second.wait_ready().await;
    let started = Instant::now();
    eventually(
        Duration::from_secs(60),
        "every event delivered after the restart",
        || {
            let delivered = successes(&hook).len();
            Box::pin(async move { (delivered == total).then_some(()) })
        },
    )
    .await;
    let ok = successes(&hook);
    assert_eq!(
        ok.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "missing must be 0"
    );
    let duplicates: usize = ok.values().map(|n| n - 1).sum();
    println!(
        "worker SIGKILL: published {total}, delivered before kill {before_restart}, delivered unique {}, \
         duplicates {duplicates} (bound: prefetch 50 + retries in flight), drained {:?} after restart",
        ok.len(),
        started.elapsed()
    );
    assert!(
        duplicates <= 100,
        "duplicates {duplicates} exceed the in-flight window"
    );
    drop(second);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_attempts_and_exits_0() {
    crate::support::init();
    let prefix = unique_prefix();
    let herald = Herald::start(&prefix);
    herald.wait_ready().await;
    let hook = Receiver::start([]).await;
    hook.always(Reply::ok().after(Duration::from_millis(1500)));
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/subscriptions", herald.api))
        .bearer_auth(TOKEN)
        .json(&subscription("slow", &hook.url(), &["*"]))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker = Broker::connect(&prefix).await;
    broker
        .publish_event("a.b", br#"{"type":"a.b","id":"in-flight"}"#)
        .await;
    hook.next_request(Duration::from_secs(10)).await;

    herald.signal("-TERM");
    let mut herald = herald;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = herald.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "herald did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    // The in-flight attempt was finished and acked: nothing is left to redeliver.
    let again = Herald::start(&prefix);
    again.wait_ready().await;
    hook.assert_quiet(Duration::from_secs(2)).await;
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn without_redis_deliveries_continue_from_the_snapshot_and_an_empty_restart_is_not_adopted() {
    // A Redis of this test's own, so stopping it disturbs no other test.
    let mut redis = PrivateRedis::start(false).await;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| c.redis.url = herald::config::SecretUrl::new(url)).await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription(subscription("kept", &hook.url(), &["*"]))
        .await;

    redis.kill();
    let ready_says = |missing: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/readyz"));
        move || {
            let (http, url) = (http.clone(), url.clone());
            Box::pin(async move {
                let r = http.get(&url).send().await.ok()?;
                let status = r.status();
                let body: serde_json::Value = r.json().await.ok()?;
                let listed = body["missing"].as_array()?.contains(&json!(missing));
                (status == 503 && listed).then_some(())
            }) as futures_util::future::BoxFuture<'static, Option<()>>
        }
    };
    eventually(
        Duration::from_secs(10),
        "/readyz to report redis",
        ready_says("redis"),
    )
    .await;
    app.publish(json!({"type": "a.b", "id": "while-redis-down"}))
        .await;
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("webhook-id"), "while-redis-down");
    assert!(request.verify(&secret));
    assert!(app.metrics().await.contains("herald_redis_connected 0"));
    let (status, _) = app.api(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(status, 503, "API reads answer 503 while Redis is down");

    // Redis returns without its data: the worker keeps its snapshot and says so.
    redis.boot().await;
    eventually(
        Duration::from_secs(10),
        "/readyz to report the reset",
        ready_says("subscription_store_reset"),
    )
    .await;
    app.publish(json!({"type": "a.b", "id": "after-reset"}))
        .await;
    assert_eq!(
        hook.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "after-reset"
    );

    // Writing the store again ends the reset state.
    let mut body = subscription("kept", &hook.url(), &["*"]);
    body["secret"] = json!(secret);
    let (status, _) = app.api(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201);
    app.wait_ready().await;
    drop(redis);
}

/// A broker that takes the TCP connection and then says nothing (frozen, or
/// still booting) fails the session's setup in bounded time, so the worker
/// retries instead of waiting forever (found by the chaos scenario B2).
#[tokio::test]
async fn a_broker_that_never_answers_fails_the_session_setup_in_bounded_time() {
    crate::support::init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket); // accepted, never answered
        }
    });
    let mut config = crate::support::test_config(&unique_prefix()).amqp;
    config.url = herald::config::NodeUrls::new(format!("amqp://guest:guest@{addr}/%2f"));
    let started = Instant::now();
    let opened = tokio::time::timeout(
        Duration::from_secs(60),
        Session::open(
            &config,
            SessionSpec {
                name: "silent",
                declare: None,
                consume: false,
            },
        ),
    )
    .await
    .expect("Session::open returned");
    let error = opened.err().expect("no session with a silent broker");
    assert!(
        format!("{error:#}").contains("no answer from the broker"),
        "{error:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    held.abort();
}

/// Connections the broker dropped (a broker SIGKILL resets every socket)
/// are closed in bounded time, so the worker goes on to reconnect instead of
/// waiting on a close that can never be answered (found by chaos scenario B1).
#[tokio::test]
async fn a_session_whose_connections_were_reset_closes_in_bounded_time() {
    crate::support::init();
    let proxy = crate::support::proxy::FaultProxy::start(([127, 0, 0, 1], 5672).into()).await;
    let mut config = crate::support::test_config(&unique_prefix()).amqp;
    config.url = herald::config::NodeUrls::new(format!(
        "amqp://guest:guest@{}/%2f?heartbeat=5",
        proxy.addr()
    ));
    let spec = SessionSpec {
        name: "reset",
        declare: None,
        consume: true,
    };
    let session = Session::open(&config, spec)
        .await
        .expect("a session through the proxy");
    let _consumer = session.consume("amq.rabbitmq.reply-to", 1).await.err(); // any consumer-side state is fine; the reset is what matters
    proxy.set(crate::support::proxy::Mode::Refuse);
    proxy.reset_all();
    tokio::time::timeout(Duration::from_secs(10), session.failed())
        .await
        .expect("the reset trips the session's fault token");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), session.close())
        .await
        .expect("Session::close returned");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closing took {:?}",
        started.elapsed()
    );
}
