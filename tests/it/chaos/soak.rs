//! L1, the soak: steady load for `HERALD_SOAK_MINUTES` (scripts/soak.sh) on a
//! broker and a Redis of the test's own, with a worker SIGKILLed every 2
//! minutes, the broker every 5 and Redis every 7, printing RSS and open files
//! of the worker that is never killed every 30 s, then the ledger.

use std::time::{Duration, Instant};

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load,
};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{
    process::{open_fds, rss_kib},
    services::{PrivateBroker, PrivateRedis},
};

fn sample(pid: u32) -> (u64, usize) {
    (rss_kib(pid), open_fds(pid))
}

#[tokio::test]
async fn soak() {
    let minutes: u64 = std::env::var("HERALD_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(5);
    let rate = 40.0;
    let mut broker = PrivateBroker::start().await;
    let mut redis = PrivateRedis::start(true).await;
    let mut lab = Lab::new()
        .amqp(broker.url())
        .redis(redis.url())
        .env("HERALD__AMQP__QUEUE_TYPE", "quorum")
        .env("HERALD__LOG__LEVEL", "warn");
    let steady = lab.start_worker().await;
    let mut victim = lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::ok().after(Duration::from_millis(5)));
    lab.subscribe(hook("soak", &receiver)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ledger = Ledger::new("soak", &["soak"]);
    let total = (rate * 60.0 * minutes as f64) as usize;
    let producer = load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..total,
        Some(rate),
        Some(500),
    );
    let pid = lab.worker(steady).child.id();
    let started = Instant::now();
    let (mut worker_kills, mut broker_kills, mut redis_kills) = (0, 0, 0);
    let mut tick = 0u64;
    println!("SOAK | t s | steady worker RSS KiB | open fds | published | delivered");
    while !producer.is_finished() {
        tokio::time::sleep(Duration::from_secs(30)).await;
        tick += 1;
        let (rss, fds) = sample(pid);
        println!(
            "SOAK | {} | {rss} | {fds} | {} | {}",
            started.elapsed().as_secs(),
            ledger.published(),
            receiver.requests().len()
        );
        if tick.is_multiple_of(4) {
            lab.kill_worker(victim);
            victim = lab.start_worker().await;
            worker_kills += 1;
        }
        if tick.is_multiple_of(10) {
            broker.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.boot().await;
            broker_kills += 1;
        }
        if tick.is_multiple_of(14) {
            redis.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.boot().await;
            redis_kills += 1;
        }
    }
    producer.await.unwrap();
    println!(
        "soak: {minutes} min at {rate}/s; {worker_kills} worker, {broker_kills} broker and {redis_kills} Redis kills"
    );
    // Each worker kill may redeliver its window; each broker kill, both workers'.
    let bound = worker_kills * 100 + broker_kills * 200;
    lab.settle(&ledger, &[&receiver], Duration::from_secs(180))
        .await
        .check(bound);
    let (rss, fds) = sample(pid);
    println!(
        "SOAK | end | {rss} | {fds} | {} | {}",
        ledger.published(),
        receiver.requests().len()
    );
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
