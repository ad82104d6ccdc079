//! Publish -> receiver-arrival latency under a steady open-loop load: events
//! go out on a fixed schedule (`--rate` for `--duration`) whatever herald
//! does, each stamped with its send time, and the receiver timestamps arrival.
//!
//! With `--slow-receiver D` it measures isolation: every event also matches a
//! second subscription whose receiver answers after D; the healthy receiver's
//! latencies are the ones reported.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::time::{MissedTickBehavior, interval};

use crate::{
    Args,
    amqp::Publisher,
    api::{Api, Metrics},
    ceiling::CeilingLoop,
    receiver::{self, Behaviour},
    stats::{Latencies, Summary},
};

/// Publishing wakes this often and sends whatever the schedule says is due:
/// small batches, so the load is steady at the scale herald's latency is read.
const TICK: Duration = Duration::from_millis(5);
/// How long after the last publish an event may still arrive; later is missing.
const STRAGGLERS: Duration = Duration::from_secs(60);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let events = (args.rate * args.duration.as_secs_f64()).round() as u64;
    let latencies = Arc::new(Latencies::new(events));
    let healthy = receiver::start(Behaviour::Accept, Some(latencies.clone())).await?;
    let slow = match args.slow_receiver {
        Some(delay) => Some((delay, receiver::start(Behaviour::Delay(delay), None).await?)),
        None => None,
    };
    if let Some(queue_type) = &args.ceiling {
        // The same schedule through the bare consume -> POST -> ack loop: the
        // latency the broker and this machine allow any worker.
        let ceiling = CeilingLoop::start(args, queue_type, &healthy.url).await?;
        let publisher = Publisher::connect(&args.amqp, "", &ceiling.queue, args.size).await?;
        let publishing = publish_paced(&publisher, args.rate, events).await?;
        publisher.finish().await?;
        let summary = wait_for_arrivals(&latencies, events).await;
        println!("latency: the ceiling loop on a {queue_type} queue");
        report(args, events, publishing, &summary);
        println!("result: events={events} rate={:.0} {summary}", args.rate);
        return Ok(());
    }
    let mut wanted = vec![("healthy", healthy.url.as_str())];
    if let Some((_, slow)) = &slow {
        wanted.push(("slow", slow.url.as_str()));
    }
    let api = Api::new(&args.api, &args.token)?;
    let subscriptions = api.subscribe(&wanted).await?;

    let before = api.metrics().await?;
    let publishing = publish(args, events).await?;
    let summary = wait_for_arrivals(&latencies, events).await;
    let after = api.metrics().await?;
    api.unsubscribe(&subscriptions).await;

    match &slow {
        Some((delay, slow)) => println!(
            "isolation: every event to a healthy receiver and to one answering after {delay:?} \
             ({} answered by the end)",
            slow.counters.succeeded()
        ),
        None => println!("latency: one subscription"),
    }
    let achieved = report(args, events, publishing, &summary);
    print_handoffs(&before, &after);
    let mut result = format!(
        "result: events={events} rate={:.0} achieved={achieved:.0} {summary}",
        args.rate
    );
    if let Some((_, slow)) = &slow {
        // The slow subscription's backlog cannot drain at this rate (it is parked
        // in delay queues until places free up): the caller stops herald and
        // clears the queues before measuring anything else.
        result += &format!(" slow_answered={}", slow.counters.succeeded());
    }
    println!("{result}");
    Ok(())
}

/// Waits until every event arrived or the stragglers' time is up.
async fn wait_for_arrivals(latencies: &Latencies, events: u64) -> Summary {
    let deadline = Instant::now() + STRAGGLERS;
    while latencies.arrived() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.summary()
}

/// Prints the rates and latencies; returns the achieved rate.
fn report(args: &Args, events: u64, publishing: Duration, summary: &Summary) -> f64 {
    let achieved = events as f64 / publishing.as_secs_f64();
    println!(
        "  {events} events at {:.0}/s wanted, {achieved:.0}/s achieved over {:.1}s",
        args.rate,
        publishing.as_secs_f64()
    );
    println!(
        "  publish -> arrival: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} missing",
        summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms, summary.missing
    );
    achieved
}

/// Where herald's time went: a first attempt it could not make at once waits in
/// <p>.deliveries, behind whatever else is there.
fn print_handoffs(before: &Metrics, after: &Metrics) {
    let handed = |reason| {
        let label = format!("reason=\"{reason}\"");
        let count = |m: &Metrics| m.sum("herald_fanout_handoffs_total", |l| l.contains(&label));
        (count(after) - count(before)).max(0.0)
    };
    println!(
        "  first attempts handed to <p>.deliveries: {} for want of a slot, {} at a subscription's cap",
        handed("no_slot"),
        handed("subscription_cap")
    );
}

/// Publishes events `0..events` to herald's exchange on schedule and waits for
/// their confirms; returns how long publishing took.
async fn publish(args: &Args, events: u64) -> anyhow::Result<Duration> {
    let exchange = format!("{}.events", args.prefix);
    let publisher = Publisher::connect(&args.amqp, &exchange, "load.test", args.size).await?;
    let took = publish_paced(&publisher, args.rate, events).await?;
    publisher.finish().await?;
    Ok(took)
}

/// Publishes events `0..events` on the schedule "`rate` per second since the
/// start", catching up after any stall instead of slowing down (open loop: a
/// slow herald must not lower the load it is measured under). Returns how long
/// publishing took.
async fn publish_paced(publisher: &Publisher, rate: f64, events: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0;
    while sent < events {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(events);
        for seq in sent..due {
            publisher.publish(seq).await?;
        }
        sent = sent.max(due);
    }
    Ok(started.elapsed())
}
