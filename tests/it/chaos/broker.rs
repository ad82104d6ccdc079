//! B1–B6: the broker killed, frozen, alarmed, timing consumers out, moving a
//! poison message, and losing a queue. B1–B5 use a RabbitMQ node of the
//! test's own (quorum queues, as in production), so faults stay private.

use std::time::{Duration, Instant};

use lapin::options::QueueDeleteOptions;
use serde_json::json;

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{
    TOKEN, metric_sum,
    receiver::{Receiver, Reply},
    services::PrivateBroker,
};

/// A lab on `broker` with quorum queues and a 3 s confirm timeout.
fn lab_on(broker: &PrivateBroker) -> Lab {
    Lab::new()
        .amqp(broker.url())
        .env("HERALD__AMQP__QUEUE_TYPE", "quorum")
        .env("HERALD__AMQP__CONFIRM_TIMEOUT", "3s")
}

/// `POST /v1/events` once; returns its status and how long it took.
async fn post_event(lab: &Lab, id: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = reqwest::Client::new()
        .post(format!("{}/v1/events", lab.api()))
        .bearer_auth(TOKEN)
        .json(&json!({"id": id, "type": "api.probe"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// B1: the broker SIGKILLed and restarted with events in flight and retries
/// waiting in delay queues. herald reconnects by itself; the API answers 503
/// while the broker is away. Part of the CI subset.
#[tokio::test]
async fn b1_broker_killed_and_restarted_with_retries_pending() {
    let mut broker = PrivateBroker::start().await;
    // Retries wait 2.4–3.6 s, so the kill finds them in the delay queues.
    let mut lab = lab_on(&broker)
        .env("HERALD__DELIVERY__RETRY_INITIAL", "3s")
        .env("HERALD__DELIVERY__RETRY_MAX_DELAY", "5s")
        .env("HERALD__METRICS__QUEUE_REFRESH", "500ms");
    let worker = lab.start_worker().await;
    // The first 300 attempts fail.
    let receiver = Receiver::start(std::iter::repeat_n(Reply::status(500), 300)).await;
    receiver.always(Reply::ok().after(Duration::from_millis(5)));
    let ledger = Ledger::new("b1", &["b1"]);
    lab.subscribe(hook("b1", &receiver)).await;
    // Quorum queues declared less than ~1 s before a broker kill can come back
    // empty on RabbitMQ 3.10 (RELIABILITY.md #9): that is not what this tests.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..1_500,
        Some(500.0),
        Some(100),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delayed = queued(&lab.metrics(worker).await, ".delay.");
    broker.kill();
    let (status, took) = post_event(&lab, "while-down").await;
    println!("b1: POST /v1/events with the broker down: {status} in {took:?}");
    assert_eq!(
        status, 503,
        "an event the broker never confirmed was accepted"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.boot().await;
    let retries = producer.await.unwrap();
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(300 + 2 * 50 * 2);
    println!(
        "b1: {delayed} retries waited in delay queues at the kill; {} events published during the outage; producer retried {retries} publishes",
        ledger.published()
    );
    assert!(delayed > 0, "the kill found no retry waiting");
    assert_eq!(report.dead_total(), 0);
    lab.wait_snapshots().await; // /readyz 200 again, no restart of herald
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// The sum of `herald_queue_messages` over the queues whose name contains `part`.
fn queued(metrics: &str, part: &str) -> u64 {
    metric_sum(metrics, |l| {
        l.starts_with("herald_queue_messages{") && l.contains(part)
    })
    .unwrap_or(0.0) as u64
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// B2: the broker frozen (SIGSTOP) for 20 s: heartbeats notice, no API call
/// hangs past its confirm timeout, and the work resumes after SIGCONT.
#[tokio::test]
async fn b2_broker_frozen() {
    let broker = PrivateBroker::start().await;
    let mut lab = lab_on(&broker);
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    let ledger = Ledger::new("b2", &["b2"]);
    lab.subscribe(hook("b2", &receiver)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..500, None, None)
        .await
        .unwrap();
    broker.freeze();
    let frozen = Instant::now();
    let (status, took) = post_event(&lab, "while-frozen").await;
    println!("b2: POST /v1/events with the broker frozen: {status} in {took:?}");
    assert_ne!(status, 202, "accepted without a confirm");
    assert!(took < Duration::from_secs(8), "POST hung for {took:?}");
    let producer = load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 500..700, None, None);
    let remaining = Duration::from_secs(20).saturating_sub(frozen.elapsed());
    tokio::time::sleep(remaining).await;
    broker.thaw();
    producer.await.unwrap();
    lab.settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(200);
    lab.wait_snapshots().await;
    let reconnects = lab.logs().matches("reconnecting").count();
    println!("b2: {reconnects} reconnect log lines");
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// B3: a memory alarm blocks publishers: the API answers 503 within its
/// timeout while consumers keep acking on their own connection, and first
/// attempts wait for a slot (or a place) instead of publishing into the
/// blocked connection. Part of the CI subset (a regression test for both).
#[tokio::test]
async fn b3_memory_alarm_blocks_publishing_not_acking() {
    const SLOTS: usize = 20;
    let broker = PrivateBroker::start().await;
    let mut lab = lab_on(&broker).env("HERALD__WORKER__CONCURRENCY", &SLOTS.to_string());
    let first = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    // 20 slots x 100 ms: about 200/s, ten seconds of work for the backlog.
    receiver.always(Reply::ok().after(Duration::from_millis(100)));
    let ledger = Ledger::new("b3", &["b3"]);
    lab.subscribe(hook("b3", &receiver)).await;
    // The backlog must still be there when the alarm starts. On a loaded
    // machine the broker took the events slower than the worker delivered
    // them, and the alarm found an empty queue (4 to 25 deliveries counted):
    // so they queue with no worker, and the worker that takes them starts
    // just before the alarm. The first one is idle when killed: nothing lost.
    lab.kill_worker(first);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..2_000, None, None)
        .await
        .unwrap();
    let worker = lab.start_worker().await;
    broker.ctl(&["set_vm_memory_high_watermark", "0"]);
    let before = receiver.requests().len();
    let (status, took) = post_event(&lab, "during-alarm").await;
    println!("b3: POST /v1/events during the alarm: {status} in {took:?}");
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(8), "POST hung for {took:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = receiver.requests().len() - before;
    let metrics = lab.metrics(worker).await;
    broker.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    println!("b3: {during} deliveries acked during the alarm");
    assert!(
        during > 100,
        "acks stalled with the publishers: {during}; the worker logged:\n{}",
        tail(&lab.logs(), 60)
    );
    assert!(metrics.contains("herald_broker_connected 1"), "{metrics}");
    // A follow-up (a park under load) sent in the moment before herald hears of
    // the block is an unknown outcome: its message is returned, and repeated when
    // the broker takes the publish after all (DESIGN). At most one per slot.
    lab.settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(SLOTS);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// B4: the broker's consumer timeout at 5 s. (a) An endpoint that hangs past
/// herald's 2 s HTTP timeout never trips it; (b) with a 90 s HTTP timeout the
/// hang does, the broker closes the channel, and herald resumes on its own.
#[tokio::test]
async fn b4_consumer_timeout() {
    let broker = PrivateBroker::start().await;
    broker.ctl(&[
        "eval",
        "application:set_env(rabbit, consumer_timeout, 5000).",
    ]);
    // The broker checks once a minute, so the hang outlasts a check: 70 s.
    for (case, http_timeout, trips) in [("b4a", "2s", false), ("b4b", "90s", true)] {
        let mut lab = lab_on(&broker)
            .env("HERALD__DELIVERY__TIMEOUT", http_timeout)
            .env("HERALD__DELIVERY__MAX_ATTEMPTS", "50");
        lab.start_worker().await;
        let receiver = Receiver::start(std::iter::repeat_n(
            Reply::ok().after(Duration::from_secs(70)),
            3,
        ))
        .await;
        let ledger = Ledger::new(case, &[case]);
        lab.subscribe(hook(case, &receiver)).await;
        load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..100, Some(1.0), None)
            .await
            .unwrap();
        // The broker checks consumer timeouts once a minute.
        lab.settle(&ledger, &[&receiver], Duration::from_secs(150))
            .await
            .check(100);
        let reconnects = lab.logs().matches("reconnecting").count();
        println!("{case}: HTTP timeout {http_timeout}: {reconnects} session restarts");
        if trips {
            assert!(reconnects > 0, "the consumer timeout never fired");
        } else {
            assert_eq!(
                reconnects, 0,
                "herald held a message past the consumer timeout"
            );
        }
        lab.assert_queues_empty().await;
        lab.assert_no_panics();
    }
}

/// B5: an event that takes its worker down every time (the worker is killed
/// while it holds it) ends in `<p>.dead` after `amqp.delivery_limit`
/// deliveries instead of looping; the events behind it are delivered.
#[tokio::test]
async fn b5_poison_event_reaches_the_dead_letter_queue() {
    let broker = PrivateBroker::start().await;
    let mut lab = lab_on(&broker)
        .env("HERALD__AMQP__DELIVERY_LIMIT", "2")
        .env("HERALD__AMQP__PREFETCH", "1")
        .env("HERALD__WORKER__CONCURRENCY", "1")
        .env("HERALD__DELIVERY__TIMEOUT", "60s");
    let mut current = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_secs(60)));
    let ledger = Ledger::new("b5", &["b5"]);
    lab.subscribe(hook("b5", &receiver)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..1, None, None)
        .await
        .unwrap();
    let mut kills = 0;
    while lab.count_dead_letters().await == 0 {
        assert!(kills < 6, "the poison event was never dead-lettered");
        // A worker holding the poison event is stuck on its request: kill it then.
        let arrived = tokio::time::timeout(
            Duration::from_secs(15),
            receiver.next_request(Duration::from_secs(3600)),
        )
        .await;
        if arrived.is_ok() {
            lab.kill_worker(current);
            kills += 1;
            current = lab.start_worker().await;
        }
    }
    receiver.always(Reply::ok());
    // The events behind it flow.
    let rest = Ledger::new("b5-rest", &["b5"]);
    load::spawn(&lab.amqp_url, &lab.prefix, &rest, 0..50, None, None)
        .await
        .unwrap();
    let poison = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(30))
        .await
        .check(kills);
    println!("b5: dead-lettered after {kills} worker kills");
    assert_eq!(poison.dead.get("poison"), Some(&1));
    lab.settle(&rest, &[&receiver], Duration::from_secs(30))
        .await
        .check(0);
    lab.assert_no_panics();
}

/// B6: `<p>.dead` deleted at runtime. The dead-letter publish is returned
/// (mandatory), the event is not acked, and the next session re-declares the
/// queue: the dead letters arrive, nothing is lost.
#[tokio::test]
async fn b6_a_deleted_queue_is_declared_again() {
    let mut lab = Lab::new();
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    let ledger = Ledger::new("b6", &["b6"]);
    let mut body = hook("b6", &receiver);
    body["enabled"] = json!(false);
    lab.subscribe(body).await;
    {
        let conn = lapin::Connection::connect(&lab.amqp_url, Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .queue_delete(
                format!("{}.dead", lab.prefix).as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
    }
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..50, None, None)
        .await
        .unwrap();
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(60))
        .await
        .check(0);
    assert_eq!(report.dead.get("subscription_disabled"), Some(&50));
    assert!(receiver.requests().is_empty());
    let faults = lab.logs().matches("reconnecting").count();
    println!("b6: healed after {faults} session restarts");
    assert!(faults > 0, "the returned dead letter went unnoticed");
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
