//! Matching cost: 10,000 subscriptions with mixed event-type patterns and
//! label selectors, compiled into one snapshot; time to find one event's
//! matches, median and p99 over a spread of events. Pure CPU, no services.
//!
//! cargo run --release --example matchbench [-- SUBSCRIPTIONS]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use herald::{
    event,
    subscriptions::{
        credentials::Credentials,
        model::Subscription,
        snapshot::{Compiled, Snapshot},
    },
};
use serde_json::json;

const TYPES: [&str; 8] = [
    "deployment.started",
    "deployment.failed",
    "deployment.succeeded",
    "testworkflow.end.success",
    "testworkflow.end.failed",
    "build.done",
    "data.quality.check",
    "incident.opened",
];

fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map_or(Ok(10_000), |n| n.parse())?;
    let credentials = Arc::new(Credentials::new("/nonexistent"));
    let mut compiled = Vec::with_capacity(count);
    for i in 0..count {
        // Of 20: 12 exact types, 5 prefix globs, 2 other globs, 1 `*`; selectors of every kind.
        let events = match i % 20 {
            0..=11 => json!([TYPES[i % TYPES.len()]]),
            12..=16 => json!([format!(
                "{}.*",
                TYPES[i % TYPES.len()].split('.').next().unwrap_or("x")
            )]),
            17 | 18 => json!(["*.failed", TYPES[(i + 3) % TYPES.len()]]),
            _ => json!(["*"]),
        };
        // A fleet: subscriptions belong to 500 projects (and 50 teams), so an event
        // matches a few dozen of them, as in a real deployment; `matches` is printed.
        let selector: Option<String> = match i % 10 {
            0..=3 => Some(format!("project=p{}", i % 500)),
            4 | 5 => Some(format!("project=p{},env in (prod,staging)", i % 500)),
            6 | 7 => Some(format!("project=p{}*,env!=dev", i % 50)),
            8 => Some(format!("team=t{},!skip", i % 50)),
            _ => Some(format!("project=p{},team=t{}", i % 500, i % 50)),
        };
        let mut body = json!({"name": format!("sub-{i}"), "url": "https://example.com/hook", "events": events});
        if let Some(selector) = selector {
            body["selector"] = json!(selector);
        }
        let sub = Subscription::from_json(&body, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        compiled.push(Compiled::compile(sub, &credentials).map_err(anyhow::Error::msg)?);
    }
    let snapshot = Snapshot::build(1, compiled);

    let events: Vec<_> = (0..1000)
        .map(|i| {
            let env = ["prod", "dev", "staging"][i % 3];
            let body = json!({"type": TYPES[i % TYPES.len()],
                              "labels": {"env": env, "project": format!("p{}", i % 500), "team": format!("t{}", i % 50)}});
            event::decode(body.to_string().as_bytes()).map(|d| d.event)
        })
        .collect::<Result<_, _>>()?;
    let mut times = Vec::with_capacity(events.len() * 5);
    let mut matched = 0usize;
    for _ in 0..5 {
        for event in &events {
            let started = Instant::now();
            matched += snapshot.matching(event).count();
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let median: Duration = at(0.5);
    println!(
        "matching against {count} subscriptions: median {:.1} us, p99 {:.1} us, max {:.1} us ({} matches per event on average)",
        median.as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
        matched / times.len()
    );
    Ok(())
}
