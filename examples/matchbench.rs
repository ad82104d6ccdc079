//! Matching cost: 10,000 subscriptions with mixed event-type patterns and
//! label selectors, compiled into one snapshot; time to find one event's
//! matches, median and p99 over a spread of events. Run twice: plain, then
//! with a payload filter on a tenth of the subscriptions (the events carry
//! the same `data` both times). Pure CPU, no services.
//!
//! cargo run --release --example matchbench [-- SUBSCRIPTIONS]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use herald::{
    event::{self, Event},
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

/// What teams filter on: a status, a branch, a duration, a nested count.
const FILTERS: [&str; 5] = [
    r#"data.status == "failed" and data.duration_ms > 1000"#,
    r#"data.commit.branch in ["main", "release"]"#,
    r#"exists(data.tests) and data.tests.failed >= 1"#,
    r#"data.status != "running" and not data.commit.branch == "develop""#,
    r#"labels.env == "prod" or data.commit.author.email == "ci@example.com""#,
];

fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map_or(Ok(10_000), |n| n.parse())?;
    let events = events()?;
    let plain = snapshot(count, false)?;
    report(&format!("{count} subscriptions"), &plain, &events);
    // How often a filter runs at all: an event's data is parsed only when a filtered
    // subscription is left after patterns and selectors.
    let parsed = events
        .iter()
        .filter(|e| plain.matching(e).any(|c| filtered(&c.sub.name)))
        .count();
    let with_filters = snapshot(count, true)?;
    report(
        &format!(
            "{count} subscriptions, {} of them with a filter on data ({} % of events parse their data)",
            (0..count).filter(|i| filtered(&format!("sub-{i}"))).count(),
            100 * parsed / events.len()
        ),
        &with_filters,
        &events,
    );
    Ok(())
}

/// One subscription in ten has a filter: two of each project's twenty, of every
/// pattern and selector kind.
fn filtered(name: &str) -> bool {
    name.strip_prefix("sub-")
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| (i / 500) % 10 == 0)
}

fn snapshot(count: usize, filters: bool) -> anyhow::Result<Snapshot> {
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
        let selector = match i % 10 {
            0..=3 => format!("project=p{}", i % 500),
            4 | 5 => format!("project=p{},env in (prod,staging)", i % 500),
            6 | 7 => format!("project=p{}*,env!=dev", i % 50),
            8 => format!("team=t{},!skip", i % 50),
            _ => format!("project=p{},team=t{}", i % 500, i % 50),
        };
        let mut body = json!({"name": format!("sub-{i}"), "url": "https://example.com/hook",
                              "events": events, "selector": selector});
        if filters && filtered(&format!("sub-{i}")) {
            body["filter"] = json!(FILTERS[i % FILTERS.len()]);
        }
        let sub = Subscription::from_json(&body, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        compiled.push(Compiled::compile(sub, &credentials).map_err(anyhow::Error::msg)?);
    }
    Ok(Snapshot::build(1, compiled))
}

/// A spread of events with a CI-like payload of about 260 bytes.
fn events() -> anyhow::Result<Vec<Event>> {
    (0..1000)
        .map(|i| {
            let env = ["prod", "dev", "staging"][i % 3];
            let status = ["passed", "failed", "running", "failed"][i % 4];
            let branch = ["main", "develop", "release", "feature/login"][i % 4];
            let email = ["ci@example.com", "dev@example.com"][i % 2];
            let data = json!({
                "status": status,
                "duration_ms": (i * 37) % 5000,
                "commit": {"branch": branch, "sha": format!("{:040x}", i * 7919),
                           "author": {"name": "CI", "email": email}},
                "tests": {"total": 120, "failed": i % 7, "skipped": i % 3},
                "url": format!("https://ci.example.com/runs/{i}"),
            });
            let body = json!({"type": TYPES[i % TYPES.len()], "data": data,
                              "labels": {"env": env, "project": format!("p{}", i % 500), "team": format!("t{}", i % 50)}});
            event::decode(body.to_string().as_bytes()).map(|d| d.event)
        })
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::from)
}

fn report(what: &str, snapshot: &Snapshot, events: &[Event]) {
    let mut times = Vec::with_capacity(events.len() * 5);
    let mut matched = 0usize;
    for _ in 0..5 {
        for event in events {
            let started = Instant::now();
            matched += snapshot.matching(event).count();
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let median: Duration = at(0.5);
    println!(
        "matching against {what}: median {:.1} us, p99 {:.1} us, max {:.1} us ({} matches per event on average)",
        median.as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
        matched / times.len()
    );
}
