//! Closed-loop throughput: `--events` published as fast as confirms allow,
//! deliveries/s counted from the first publish to the last 2xx the receiver
//! gave. Against herald (`--fanout` subscriptions per event), against the bare
//! ceiling loop (`--ceiling`), or as a retry storm (`--fail-first`: every
//! delivery fails once, so only retries succeed).

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crate::{
    Args,
    amqp::{self, Publisher},
    api::Api,
    ceiling::CeilingLoop,
    receiver::{self, Behaviour},
};

/// A run that has not finished by then is stuck, not slow.
const TIMEOUT: Duration = Duration::from_secs(600);
/// How long outcome events may trail the last delivery.
const OUTCOMES_TRAIL: Duration = Duration::from_secs(5);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let behaviour = if args.fail_first {
        Behaviour::FailFirst
    } else {
        Behaviour::Accept
    };
    let receiver = receiver::start(behaviour, None).await?;
    let api = Api::new(&args.api, &args.token)?;
    let mut subscriptions = Vec::new();
    let mut ceiling = None;
    let (exchange, routing_key, fanout) = match &args.ceiling {
        Some(queue_type) => {
            let started = CeilingLoop::start(args, queue_type, &receiver.url).await?;
            let queue = started.queue.clone();
            ceiling = Some(started);
            (String::new(), queue, 1)
        }
        None => {
            let suffixes: Vec<String> = (0..args.fanout).map(|i| i.to_string()).collect();
            let wanted: Vec<(&str, &str)> = suffixes
                .iter()
                .map(|s| (s.as_str(), receiver.url.as_str()))
                .collect();
            subscriptions = api.subscribe(&wanted).await?;
            (
                format!("{}.events", args.prefix),
                "load.test".to_owned(),
                args.fanout,
            )
        }
    };

    let outcomes = if args.outcomes {
        Some(amqp::count_outcomes(&args.amqp, &args.prefix).await?)
    } else {
        None
    };
    let publisher = Publisher::connect(&args.amqp, &exchange, &routing_key, args.size).await?;
    let started = Instant::now();
    for seq in 0..args.events {
        publisher.publish(seq).await?;
    }
    publisher.finish().await?;
    let published = started.elapsed();
    let want = args.events * fanout;
    let counters = &receiver.counters;
    while counters.succeeded() < want {
        anyhow::ensure!(
            started.elapsed() < TIMEOUT,
            "timed out: {} of {want}",
            counters.succeeded()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    // Read before the loop stops; its start-up (a connection, a declare) is in it.
    let client_cpu_ms = match &ceiling {
        Some(ceiling) => ceiling.cpu_ms()?,
        None => 0,
    };
    drop(ceiling);
    api.unsubscribe(&subscriptions).await;
    // Outcome events are best effort and may trail the deliveries a little.
    let outcomes_taken = match &outcomes {
        Some(taken) => {
            let waited = Instant::now();
            while taken.load(Ordering::Relaxed) < want && waited.elapsed() < OUTCOMES_TRAIL {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            taken.load(Ordering::Relaxed)
        }
        None => 0,
    };

    let what = match (&args.ceiling, args.fail_first) {
        (Some(queue_type), _) => format!("ceiling ({queue_type})"),
        (None, true) => "herald, first attempts answered 500".to_owned(),
        (None, false) => "herald".to_owned(),
    };
    let per_s = want as f64 / elapsed.as_secs_f64();
    println!(
        "{what}: events {} x fan-out {fanout} = {want} deliveries",
        args.events
    );
    println!(
        "  {:.2}s: {per_s:.0} deliveries/s (publishing took {:.2}s; {} requests answered 500)",
        elapsed.as_secs_f64(),
        published.as_secs_f64(),
        counters.failed(),
    );
    if outcomes.is_some() {
        println!("  outcome events read: {outcomes_taken} of {want}");
    }
    if args.ceiling.is_some() {
        println!(
            "  the loop's process used {client_cpu_ms} ms of CPU: {:.1} us per delivery",
            client_cpu_ms as f64 * 1000.0 / want as f64
        );
    }
    println!(
        "result: deliveries={want} per_s={per_s:.0} failed={} outcomes={outcomes_taken} client_cpu_ms={client_cpu_ms}",
        counters.failed()
    );
    Ok(())
}
