//! N1: herald on a three-node RabbitMQ cluster (quorum queues replicated on
//! every node) loses the node it is connected to, SIGKILLed under steady
//! load, and gets it back: it moves to another node of `amqp.url` and loses
//! nothing. The clustering is RabbitMQ's own (`rabbitmqctl join_cluster`).

use std::time::{Duration, SystemTime};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::{receiver::Receiver, services::PrivateCluster};

/// Events published per second, and for how long.
const RATE: f64 = 200.0;
const EVENTS: usize = 6_000;

#[tokio::test]
async fn n1_cluster_node_killed_under_load_and_brought_back() {
    let mut cluster = PrivateCluster::start(3).await;
    let mut lab = Lab::new()
        .amqp(cluster.urls())
        .env("HERALD__AMQP__QUEUE_TYPE", "quorum")
        .env("HERALD__AMQP__CONFIRM_TIMEOUT", "3s");
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    let ledger = Ledger::new("n1", &["n1"]);
    lab.subscribe(hook("n1", &receiver)).await;
    let events = format!("{}.events", lab.prefix);
    assert_eq!(
        replicas(&cluster, &events),
        3,
        "{events} is not on every node"
    );

    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..EVENTS,
        Some(RATE),
        None,
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let victim = cluster
        .node_holding("herald worker consume")
        .expect("herald's worker is connected to a node");
    let killed_at = SystemTime::now();
    cluster.nodes[victim].kill();
    println!("n1: SIGKILL of node {victim}, the one herald's worker consumed from");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let moved_to = cluster.node_holding("herald worker consume");
    cluster.nodes[victim].boot().await;
    cluster.await_running(3).await;
    let retries = producer.await.unwrap();

    // Unacked deliveries of the lost connection come back (at most a prefetch
    // of each consumer), and every publish the producer retried may be there twice.
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(2 * 256 + retries);
    assert_eq!(report.dead_total(), 0);
    assert!(
        moved_to.is_some_and(|node| node != victim),
        "herald's worker did not move to another node: {moved_to:?}"
    );
    let recovered = time_to_recover(&receiver, killed_at);
    println!(
        "n1: worker moved from node {victim} to {moved_to:?}; first event published after the kill delivered {recovered:?} after it; producer retried {retries} publishes"
    );
    assert!(
        recovered < Duration::from_secs(30),
        "delivery took {recovered:?} to recover"
    );
    assert_eq!(
        replicas(&cluster, &events),
        3,
        "the node came back without its replica"
    );
    lab.wait_snapshots().await;
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}

/// Nodes holding a replica of quorum queue `queue`.
fn replicas(cluster: &PrivateCluster, queue: &str) -> usize {
    let listed = cluster.nodes[0].ctl(&["list_queues", "name", "members", "--formatter", "json"]);
    let queues: serde_json::Value = serde_json::from_str(&listed).expect("list_queues JSON");
    queues
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["name"] == queue)
        .and_then(|q| q["members"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// From `killed_at` until the first delivery of an event published after it.
fn time_to_recover(receiver: &Receiver, killed_at: SystemTime) -> Duration {
    let killed_ns = load::unix_ns(killed_at);
    receiver
        .requests()
        .iter()
        .filter(|r| r.json()["data"]["sent_ns"].as_u64() > Some(killed_ns))
        .map(|r| load::unix_ns(r.received_unix).saturating_sub(killed_ns))
        .min()
        .map_or(Duration::MAX, Duration::from_nanos)
}
