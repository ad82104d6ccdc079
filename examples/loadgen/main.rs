//! Load generator for a running herald, and the instruments `scripts/bench.sh`
//! reads. Each mode starts its own receiver(s) in this process, points
//! subscriptions at them through herald's API, publishes 1 KiB persistent
//! events over AMQP with confirms, and ends with one `result: key=value ...`
//! line for scripts (human lines above it).
//!
//! Modes (`--mode`, default `throughput`):
//! - `throughput`: `--events` as fast as confirms allow, `--fanout` subscriptions
//!   each; deliveries/s from the first publish to the last 2xx. `--ceiling quorum`
//!   measures a bare consume -> POST -> ack loop instead of herald (in a process
//!   of its own, whose CPU it reports as `client_cpu_ms`); `--fail-first`
//!   makes the receiver answer 500 to every first attempt (a retry storm);
//!   `--outcomes` also reads herald's outcome events, as an upstream system would.
//! - `latency`: open-loop publishing at `--rate` for `--duration`; publish ->
//!   receiver-arrival percentiles. `--slow-receiver 5s` adds a second subscription,
//!   matching every event too, whose receiver answers that late (isolation).
//! - `footprint`: `--events` x `--fanout` deliveries held `--hold` at the
//!   receiver; herald's VmRSS (`--pid`) once they are all in flight.
//! - `direct`: the receiver's own ceiling: `--events` plain POSTs of an event body
//!   at `--concurrency`, no broker, no herald.
//! - `scaleout`: the `throughput` load to one subscription while the bench adds
//!   and stops workers; deliveries/s, and each event's arrivals counted: the run
//!   ends when all have arrived, reporting duplicates (and missing on a stall).
//! - `loop`: the ceiling loop itself, started by `--ceiling` (not run by hand).
//!
//! cargo run --release --example loadgen -- --token T [--mode latency --rate 4000]

mod amqp;
mod api;
mod ceiling;
mod direct;
mod footprint;
mod latency;
mod receiver;
mod scaleout;
mod stats;
mod throughput;

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Throughput,
    Latency,
    Footprint,
    Direct,
    Scaleout,
    /// The ceiling loop itself, in a process of its own (`ceiling.rs`).
    Loop,
}

#[derive(Parser)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// herald's API token (not needed by `--ceiling` or `--mode direct`).
    #[arg(long, env = "HERALD__API__TOKEN", default_value = "")]
    token: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[arg(long, default_value = "herald")]
    prefix: String,
    /// Events to publish (throughput, footprint, scaleout) or POSTs to send (direct).
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Bytes of each event's JSON.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Subscriptions each event matches (throughput, footprint).
    #[arg(long, default_value_t = 1)]
    fanout: u64,
    /// Measure the ceiling instead of herald: a bare consume -> POST -> ack loop
    /// on a queue of this type (quorum|classic), same receiver, same load.
    #[arg(long)]
    ceiling: Option<String>,
    /// Concurrency (and prefetch) of the ceiling loop; concurrent POSTs in `direct`.
    #[arg(long, default_value_t = 128)]
    concurrency: u16,
    /// The receiver answers 500 to first attempts (`herald-attempt: 1`), 204 to the rest.
    #[arg(long)]
    fail_first: bool,
    /// Read herald's outcome events from `<prefix>.outcomes` too (throughput;
    /// herald needs `outcomes.enabled`), and count them.
    #[arg(long)]
    outcomes: bool,
    /// Events per second (latency).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to publish at `--rate` (latency).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Add a subscription to a receiver that answers this late (latency: isolation).
    #[arg(long, value_parser = humantime::parse_duration)]
    slow_receiver: Option<Duration>,
    /// How long the receiver holds each request (footprint).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// The ceiling loop's queue (`--mode loop`, given by the mode that starts it).
    #[arg(long, hide = true)]
    queue: Option<String>,
    /// Where the ceiling loop POSTs (`--mode loop`).
    #[arg(long, hide = true)]
    url: Option<String>,
    /// herald's process id, whose VmRSS `footprint` reads.
    #[arg(long)]
    pid: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // herald builds reqwest with `rustls-no-provider`: a client needs a crypto
    // provider installed first, even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match args.mode {
        Mode::Throughput => throughput::run(&args).await,
        Mode::Latency => latency::run(&args).await,
        Mode::Footprint => footprint::run(&args).await,
        Mode::Direct => direct::run(&args).await,
        Mode::Scaleout => scaleout::run(&args).await,
        Mode::Loop => ceiling::run(&args).await,
    }
}
