//! The receiver's own ceiling: `--events` plain HTTP POSTs of an event body,
//! `--concurrency` at a time (herald's default worker.concurrency is 128), no
//! broker and no herald. If this is not well above herald's rates, the bench
//! measures the receiver. Client and receiver share this process's cores, so
//! the figure is a floor of what the receiver alone could take.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use futures_util::future::try_join_all;

use crate::{
    Args, amqp,
    receiver::{self, Behaviour},
    stats::Latencies,
};

pub async fn run(args: &Args) -> anyhow::Result<()> {
    // A recorder, as in the latency runs: the receiver does its full per-request work.
    let latencies = Arc::new(Latencies::new(1));
    let receiver = receiver::start(Behaviour::Accept, Some(latencies)).await?;
    let body = bytes_of_event(args.size);
    let client = reqwest::Client::builder().no_proxy().build()?;
    let remaining = Arc::new(AtomicU64::new(args.events));

    let started = Instant::now();
    let workers = (0..args.concurrency.max(1)).map(|_| {
        let (client, url, body, remaining) = (
            client.clone(),
            receiver.url.clone(),
            body.clone(),
            remaining.clone(),
        );
        async move {
            // Each worker takes the next request until none are left.
            while take_one(&remaining) {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("herald-attempt", "1")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
            }
            anyhow::Ok(())
        }
    });
    try_join_all(workers.map(tokio::spawn))
        .await?
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let elapsed = started.elapsed();

    let per_s = args.events as f64 / elapsed.as_secs_f64();
    println!(
        "receiver alone: {} POSTs, {} at a time, no broker",
        args.events, args.concurrency
    );
    println!("  {:.2}s: {per_s:.0} requests/s", elapsed.as_secs_f64());
    println!("result: requests={} per_s={per_s:.0}", args.events);
    Ok(())
}

fn take_one(remaining: &AtomicU64) -> bool {
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// One load event's JSON: what a `json` subscription receives, less the few
/// envelope fields herald fills in (time, labels).
fn bytes_of_event(size: usize) -> bytes::Bytes {
    bytes::Bytes::from(amqp::event(0, &amqp::padding(size)))
}
