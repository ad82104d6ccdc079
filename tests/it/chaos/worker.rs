//! K1–K4 and S1: herald workers killed, frozen and scaled while events flow.

use std::time::{Duration, Instant};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{
    receiver::{Receiver, Reply},
    services::signal,
};

/// Deliveries one worker can hold unacked: the event and the delivery
/// consumers' prefetch (50 each in `Herald::start_with`).
const WINDOW: usize = 100;

/// K1: SIGKILL the worker at random moments, ten times, while 5,000 events flow.
#[tokio::test]
async fn k1_worker_killed_at_random_while_events_flow() {
    let mut lab = Lab::new();
    let mut current = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(20)));
    let ledger = Ledger::new("k1", &["k1"]);
    lab.subscribe(hook("k1", &receiver)).await;

    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..5_000,
        Some(400.0),
        Some(100),
    );
    let kills = 10;
    for _ in 0..kills {
        let pause = Duration::from_millis(500 + fastrand::u64(0..1500));
        tokio::time::sleep(pause).await;
        lab.kill_worker(current);
        current = lab.start_worker().await;
    }
    producer.await.unwrap();
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(kills * WINDOW);
    assert_eq!(report.dead_total(), 0);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// K2: killed after the fan-out handed delivery tasks to `<p>.deliveries` but
/// before the event was acked: the whole fan-out is published again once.
#[tokio::test]
async fn k2_worker_killed_between_fan_out_and_event_ack() {
    // Two delivery slots: nearly every first attempt is handed to <p>.deliveries.
    let mut lab = Lab::new().env("HERALD__WORKER__CONCURRENCY", "2");
    let first = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(50)));
    let names = ["k2-a", "k2-b", "k2-c", "k2-d", "k2-e"];
    let ledger = Ledger::new("k2", &names);
    for name in names {
        lab.subscribe(hook(name, &receiver)).await;
    }
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..300, None, None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab.depth("deliveries").await.unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "no hand-offs queued up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.kill_worker(first);
    lab.start_worker().await;
    // Every unacked event (prefetch 50) may fan out again to all 5 subscriptions.
    lab.settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(50 * names.len() + WINDOW);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// K3: killed while failed attempts are being republished to delay queues.
#[tokio::test]
async fn k3_worker_killed_while_publishing_retries() {
    let mut lab = Lab::new();
    let mut current = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::status(500));
    let ledger = Ledger::new("k3", &["k3"]);
    lab.subscribe(hook("k3", &receiver)).await;
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..500, None, None)
        .await
        .unwrap();
    let kills = 4;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(700)).await;
        lab.kill_worker(current);
        current = lab.start_worker().await;
    }
    receiver.always(Reply::ok());
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(kills * WINDOW);
    // A kill loses at most the attempt in flight: the number never starts over.
    let max_attempt = receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("herald-attempt").parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    println!("k3: highest attempt seen {max_attempt} of max_attempts 20");
    assert_eq!(report.dead_total(), 0, "no delivery ran out of attempts");
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// K4: one of two workers frozen (SIGSTOP) for 30 s: the other keeps
/// delivering; the frozen one's unacked work is redelivered, and after
/// SIGCONT it reconnects instead of crash-looping.
#[tokio::test]
async fn k4_a_frozen_worker_does_not_stop_the_other() {
    let mut lab = Lab::new();
    let frozen = lab.start_worker().await;
    let _other = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(10)));
    let ledger = Ledger::new("k4", &["k4"]);
    lab.subscribe(hook("k4", &receiver)).await;
    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..3_000,
        Some(100.0),
        None,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = lab.worker(frozen).child.id();
    signal(pid, "-STOP");
    let before = receiver.requests().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = receiver.requests().len() - before;
    signal(pid, "-CONT");
    producer.await.unwrap();
    println!("k4: {during} deliveries during the 30 s freeze");
    assert!(during > 1_000, "the healthy worker stalled: {during}");
    lab.settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(WINDOW);
    // Alive and ready again, without a restart.
    lab.wait_snapshots().await;
    assert!(lab.worker(frozen).child.id() == pid);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// S1: one worker, scaled to three under load, then two of them killed.
#[tokio::test]
async fn s1_scale_out_then_in_under_load() {
    let mut lab = Lab::new();
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(5)));
    let ledger = Ledger::new("s1", &["s1"]);
    lab.subscribe(hook("s1", &receiver)).await;
    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..6_000,
        Some(500.0),
        None,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = lab.start_worker().await;
    let third = lab.start_worker().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    lab.kill_worker(second);
    lab.kill_worker(third);
    producer.await.unwrap();
    lab.settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(2 * WINDOW);
    assert_eq!(lab.running_workers(), 1);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
