//! S2: five workers started in the same second against a fresh broker, each
//! declaring the same quorum queues at once (a fleet rolled out, or KEDA
//! scaling from zero). None may wedge the broker or give up: a declaration
//! that fails is retried, jittered, with the rest of the session.

use std::time::{Duration, Instant};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{eventually, receiver::Receiver, services::PrivateBroker};

const WORKERS: usize = 5;

#[tokio::test]
async fn s2_five_workers_started_together_come_up_and_share_the_work() {
    let broker = PrivateBroker::start().await;
    let mut lab = Lab::new()
        .amqp(broker.url())
        .env("HERALD__AMQP__QUEUE_TYPE", "quorum");
    let started = Instant::now();
    lab.start_workers_together(WORKERS).await;
    let ready_in = started.elapsed();

    let asked = Instant::now();
    let listed = broker.ctl(&["list_queues", "name", "type"]);
    let answered_in = asked.elapsed();
    assert!(
        answered_in < Duration::from_secs(10),
        "the broker took {answered_in:?} to list its queues"
    );
    let events = format!("{}.events", lab.prefix);
    assert!(
        listed.contains(&format!("{events}\tquorum")),
        "{events} not declared as a quorum queue:\n{listed}"
    );
    // Ready means the snapshot and the broker session are up; the consumers follow.
    eventually(Duration::from_secs(30), "every worker consuming", || {
        let consumers = broker.ctl(&["list_queues", "name", "consumers"]);
        let all = format!("{events}\t{WORKERS}");
        Box::pin(async move { consumers.lines().any(|l| l == all).then_some(()) })
    })
    .await;

    let receiver = Receiver::start([]).await;
    let ledger = Ledger::new("s2", &["s2"]);
    lab.subscribe(hook("s2", &receiver)).await;
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..1_000, None, None)
        .await
        .unwrap();
    lab.settle(&ledger, &[&receiver], Duration::from_secs(60))
        .await
        .check(0);
    let retried = lab
        .logs()
        .matches("cannot reach the broker, retrying")
        .count();
    println!(
        "s2: {WORKERS} workers started together, all ready in {ready_in:?} ({retried} session opens retried); the broker listed its queues in {answered_in:?}"
    );
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
