//! herald's memory with many deliveries in flight: `--events` events to
//! `--fanout` subscriptions whose receiver holds every request `--hold`, and
//! herald's VmRSS (`--pid`) read while the receiver has them all open at once.
//! herald must be able to hold that many: a slow subscription gets at most a
//! quarter of `worker.concurrency` and all of them together half, so with
//! `--fanout 4` it needs worker.concurrency at least twice the deliveries, and
//! amqp.prefetch and delivery.max_in_flight_per_subscription at least `--events`.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{
    Args,
    amqp::Publisher,
    api::Api,
    receiver::{self, Behaviour, Counters},
};

/// Readings taken once every delivery is in flight; the largest RSS is reported.
const FULL_SAMPLES: u32 = 5;
const POLL: Duration = Duration::from_millis(20);
/// Beyond `--hold`, how long deliveries may take to start or to finish.
const GRACE: Duration = Duration::from_secs(30);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let pid = args.pid.context("--pid: herald's process id is needed")?;
    let receiver = receiver::start(Behaviour::Delay(args.hold), None).await?;
    let api = Api::new(&args.api, &args.token)?;
    let names: Vec<String> = (0..args.fanout).map(|i| i.to_string()).collect();
    let wanted: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), receiver.url.as_str()))
        .collect();
    let subscriptions = api.subscribe(&wanted).await?;
    let deliveries = args.events * args.fanout;
    let exchange = format!("{}.events", args.prefix);
    let publisher = Publisher::connect(&args.amqp, &exchange, "load.test", args.size).await?;
    let started = Instant::now();
    for seq in 0..args.events {
        publisher.publish(seq).await?;
    }
    publisher.finish().await?;

    let counters = &receiver.counters;
    let best = peak(&api, pid, counters, deliveries, started + args.hold + GRACE).await?;
    // Let the held requests finish, so herald is idle for whatever runs next.
    while counters.succeeded() < deliveries && started.elapsed() < args.hold + GRACE {
        tokio::time::sleep(POLL).await;
    }
    api.unsubscribe(&subscriptions).await;

    println!(
        "footprint: {deliveries} deliveries ({} events x {} subscriptions) held {:?} at the receiver",
        args.events, args.fanout, args.hold
    );
    if best.open < deliveries {
        println!(
            "  warning: at most {} were in flight at once, not {deliveries}",
            best.open
        );
    }
    println!(
        "  herald VmRSS {} KiB ({} MiB) with {} requests open at the receiver, \
         herald_deliveries_in_flight {}",
        best.rss_kib,
        best.rss_kib / 1024,
        best.open,
        best.herald_in_flight
    );
    println!(
        "result: rss_kib={} receiver_open={} herald_in_flight={}",
        best.rss_kib, best.open, best.herald_in_flight
    );
    Ok(())
}

/// Readings until `deliveries` requests have been open at once for `FULL_SAMPLES`
/// readings, or until the first held request is answered (all of them are never
/// open together again after that). Returns the reading with the most requests
/// open, and of those the largest RSS.
async fn peak(
    api: &Api,
    pid: u32,
    counters: &Counters,
    deliveries: u64,
    deadline: Instant,
) -> anyhow::Result<Sample> {
    let mut best: Option<Sample> = None;
    let mut full = 0;
    while counters.succeeded() == 0 && full < FULL_SAMPLES {
        anyhow::ensure!(Instant::now() < deadline, "no delivery arrived in time");
        let sample = Sample::take(api, pid, counters).await?;
        if sample.open >= deliveries {
            full += 1;
        }
        if best
            .as_ref()
            .is_none_or(|b| (sample.open, sample.rss_kib) > (b.open, b.rss_kib))
        {
            best = Some(sample);
        }
        tokio::time::sleep(POLL).await;
    }
    best.context("the first delivery was answered before any reading")
}

struct Sample {
    /// Requests the receiver holds.
    open: u64,
    /// herald's own count, `herald_deliveries_in_flight`.
    herald_in_flight: u64,
    rss_kib: u64,
}

impl Sample {
    async fn take(api: &Api, pid: u32, counters: &Counters) -> anyhow::Result<Self> {
        let herald_in_flight = api
            .metrics()
            .await?
            .sum("herald_deliveries_in_flight", |_| true) as u64;
        Ok(Self {
            open: counters.open(),
            herald_in_flight,
            rss_kib: vm_rss_kib(pid)?,
        })
    }
}

/// Resident set size of process `pid` now, from /proc (Linux).
fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status: is herald running?"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}
