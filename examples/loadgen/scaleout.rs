//! Scale-out: the throughput load (`--events` as fast as confirms allow, one
//! subscription) while `scripts/bench.sh` starts and stops herald workers
//! around it. The receiver counts each event's arrivals, so the run ends when
//! every event has arrived at least once, and reports duplicates, and what is
//! missing if deliveries stop. `progress:` lines (publishing, half, all
//! arrived) are the bench's cues to add and stop workers and to read CPU.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Args,
    amqp::Publisher,
    api::Api,
    receiver::{self, Behaviour},
    stats::Latencies,
};

/// With no new event arriving for this long the run is stuck, not slow: what
/// has not arrived by then is reported missing.
const STALL: Duration = Duration::from_secs(30);
/// After the last first arrival, how long a redelivery of an event that already
/// arrived (a worker stopped before its ack reached the broker) may still come.
const DUPLICATES_TRAIL: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(5);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let arrivals = Arc::new(Latencies::new(args.events));
    let receiver = receiver::start(Behaviour::Accept, Some(arrivals.clone())).await?;
    let api = Api::new(&args.api, &args.token)?;
    let subscriptions = api.subscribe(&[("0", receiver.url.as_str())]).await?;
    let exchange = format!("{}.events", args.prefix);
    let publisher = Publisher::connect(&args.amqp, &exchange, "load.test", args.size).await?;

    println!("progress: publishing");
    let started = Instant::now();
    // Publishing runs beside the watch below: the half-way cue comes while
    // events are still going out.
    let events = args.events;
    let publishing = tokio::spawn(async move {
        for seq in 0..events {
            publisher.publish(seq).await?;
        }
        publisher.finish().await
    });
    let all_arrived = watch(&arrivals, events).await;
    let elapsed = started.elapsed();
    publishing.await??;
    if all_arrived {
        println!("progress: all arrived");
        tokio::time::sleep(DUPLICATES_TRAIL).await;
    }
    api.unsubscribe(&subscriptions).await;

    let summary = arrivals.summary();
    let (unique, duplicates) = (arrivals.arrived(), arrivals.duplicates());
    let strays = arrivals.strays();
    let per_s = unique as f64 / elapsed.as_secs_f64();
    println!("scale-out: {events} events, one subscription, workers joining and leaving");
    println!(
        "  {:.2}s: {per_s:.0} deliveries/s; {unique} events arrived, {duplicates} more than once, \
         {} missing ({strays} events of an earlier run arrived too, not counted)",
        elapsed.as_secs_f64(),
        summary.missing
    );
    println!(
        "result: events={events} deliveries={} per_s={per_s:.0} unique={unique} \
         duplicates={duplicates} missing={} strays={strays}",
        unique + duplicates,
        summary.missing
    );
    Ok(())
}

/// Waits until every event has arrived, printing `progress: half` once half
/// have; gives up after `STALL` without a new arrival. True if all arrived.
async fn watch(arrivals: &Latencies, events: u64) -> bool {
    let (mut seen, mut last_new) = (0, Instant::now());
    let mut half_told = false;
    while seen < events {
        if last_new.elapsed() > STALL {
            return false;
        }
        tokio::time::sleep(POLL).await;
        let now = arrivals.arrived();
        if now > seen {
            (seen, last_new) = (now, Instant::now());
        }
        if !half_told && 2 * seen >= events {
            println!("progress: half");
            half_told = true;
        }
    }
    true
}
