//! P1–P2: the worker cut off from the broker, with the TCP fault proxy in
//! between instead of a network namespace (no root network changes, same
//! effect on the wire: packets stop, nothing is reset). P1: a partition of
//! 30 s under load; P2: the cut lands while HTTP requests are in flight, so
//! their acks never arrive and the broker hands the messages out again.

use std::time::{Duration, Instant};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{
    AMQP_URL,
    proxy::{FaultProxy, Mode},
    receiver::{Receiver, Reply},
};

/// A lab whose workers reach the shared broker only through a fault proxy.
async fn partitioned_lab() -> (Lab, FaultProxy) {
    let proxy = FaultProxy::start(([127, 0, 0, 1], 5672).into()).await;
    let url = AMQP_URL.replace("127.0.0.1:5672", &proxy.addr().to_string());
    (Lab::new().amqp(url), proxy)
}

/// The worker logged that its broker connection failed.
fn noticed(lab: &Lab) -> bool {
    lab.logs().contains("broker connection failed")
}

#[tokio::test]
async fn p1_worker_partitioned_from_the_broker_for_30_s() {
    let (mut lab, proxy) = partitioned_lab().await;
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(10)));
    let ledger = Ledger::new("p1", &["p1"]);
    lab.subscribe(hook("p1", &receiver)).await;
    // The test publishes straight to the broker: only the worker is cut off.
    let producer = load::spawn(AMQP_URL, &lab.prefix, &ledger, 0..3_000, Some(75.0), None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(Mode::Blackhole);
    let cut = Instant::now();
    while !noticed(&lab) && cut.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detected = cut.elapsed();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(cut.elapsed())).await;
    proxy.set(Mode::Pass);
    producer.await.unwrap();
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(100);
    println!(
        "p1: partition noticed after {detected:?} (heartbeat 5 s); drained {:?} after the heal",
        report.drained_in
    );
    assert!(
        detected < Duration::from_secs(20),
        "the partition went unnoticed"
    );
    lab.wait_snapshots().await;
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

#[tokio::test]
async fn p2_cut_after_the_http_request_before_the_ack() {
    let (mut lab, proxy) = partitioned_lab().await;
    lab.start_worker().await;
    // Slow answers: when the cut comes, about 20 requests are at the receiver.
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(500)));
    let ledger = Ledger::new("p2", &["p2"]);
    lab.subscribe(hook("p2", &receiver)).await;
    load::spawn(AMQP_URL, &lab.prefix, &ledger, 0..500, None, None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.requests().len() < 40 {
        assert!(Instant::now() < deadline, "no deliveries before the cut");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.set(Mode::Blackhole);
    tokio::time::sleep(Duration::from_secs(15)).await;
    proxy.set(Mode::Pass);
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(100);
    println!(
        "p2: {} duplicates from acks lost in the cut (in flight: worker.concurrency 20, prefetch 50 per consumer)",
        report.duplicates
    );
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
