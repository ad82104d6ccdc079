//! H1–H9: receivers that are slow, hang, trickle, reset, flood, throttle,
//! vanish, redirect, drop keep-alive connections, or fail for a while.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{
    lab::{Lab, hook},
    ledger::Ledger,
    load::{self, latencies, quantile},
};
use crate::support::{
    fault_http::{Behaviour, FaultServer},
    free_port, metric_sum,
    process::rss_kib,
    receiver::{Receiver, Reply},
};

/// Few quick attempts, so failing endpoints end in `<p>.dead` within seconds.
fn lab(max_attempts: &str) -> Lab {
    Lab::new()
        .env("HERALD__DELIVERY__MAX_ATTEMPTS", max_attempts)
        .env("HERALD__DELIVERY__TIMEOUT", "2s")
}

/// `herald_deliveries_total{outcome}`: exported from the start, so always there.
fn deliveries(metrics: &str, outcome: &str) -> f64 {
    let line = format!("herald_deliveries_total{{outcome=\"{outcome}\"}} ");
    metric_sum(metrics, |l| l.starts_with(&line)).expect("herald_deliveries_total is exported")
}

/// H1: one endpoint that always outlasts the delivery timeout next to nine
/// healthy ones: the healthy ones keep their latency, the slow one gets
/// timeouts (retries, then a dead letter) and never more than its cap at once.
#[tokio::test]
async fn h1_a_slow_endpoint_does_not_slow_the_healthy_ones() {
    let mut lab = lab("2")
        .env("HERALD__DELIVERY__TIMEOUT", "1s")
        .env("HERALD__DELIVERY__MAX_IN_FLIGHT_PER_SUBSCRIPTION", "8");
    lab.start_worker().await;
    let healthy = Receiver::start([]).await;
    let healthy_names: Vec<String> = (0..9).map(|i| format!("h1-ok-{i}")).collect();
    for name in &healthy_names {
        lab.subscribe(hook(name, &healthy)).await;
    }
    let names: Vec<&str> = healthy_names.iter().map(String::as_str).collect();
    let solo = Ledger::new("h1-solo", &names);
    load::spawn(&lab.amqp_url, &lab.prefix, &solo, 0..100, Some(50.0), None)
        .await
        .unwrap();
    lab.settle(&solo, &[&healthy], Duration::from_secs(30))
        .await
        .check(0);
    let baseline = latencies(&healthy.requests());

    let slow = Receiver::start([]).await;
    slow.always(Reply::ok().after(Duration::from_secs(3)));
    lab.subscribe(hook("h1-slow", &slow)).await;
    let mut all = names.clone();
    all.push("h1-slow");
    let ledger = Ledger::new("h1", &all);
    let before = healthy.requests().len();
    load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..100,
        Some(50.0),
        None,
    )
    .await
    .unwrap();
    let report = lab
        .settle(&ledger, &[&healthy, &slow], Duration::from_secs(120))
        .await
        .check(0);
    let with_slow = latencies(&healthy.requests()[before..]);
    let (p99_solo, p99_slow) = (quantile(&baseline, 0.99), quantile(&with_slow, 0.99));
    println!(
        "h1: healthy p99 {p99_solo:?} alone, {p99_slow:?} next to the slow endpoint; slow endpoint held at most {} requests at once",
        slow.max_in_flight()
    );
    assert_eq!(report.dead.get("max_attempts"), Some(&100));
    assert!(slow.max_in_flight() <= 8, "the cap of 8 was exceeded");
    assert!(
        p99_slow < Duration::from_millis(500).max(p99_solo * 3),
        "healthy endpoints slowed down: {p99_solo:?} -> {p99_slow:?}"
    );
    lab.assert_no_panics();
}

/// H2 and H3: bodies that trickle forever, or never end, or inflate: each
/// attempt ends at the timeout or the read cap, and memory stays flat.
#[tokio::test]
async fn h2_h3_trickling_huge_and_compressed_responses_are_bounded() {
    let mut lab = lab("2");
    let worker = lab.start_worker().await;
    let pid = lab.worker(worker).child.id();
    let trickle = FaultServer::start(Behaviour::Trickle {
        status: 200,
        interval: Duration::from_millis(500),
    })
    .await;
    let huge = FaultServer::start(Behaviour::HugeBody { bytes: 1 << 30 }).await;
    let bomb = FaultServer::start(Behaviour::GzipBomb).await;
    for (name, server) in [
        ("h2-trickle", &trickle),
        ("h3-huge", &huge),
        ("h3-gzip", &bomb),
    ] {
        lab.subscribe(json!({"name": name, "url": server.url(), "events": ["chaos.*"]}))
            .await;
    }
    let rss_before = rss_kib(pid);
    let ledger = Ledger::new("h2", &["h2-trickle", "h3-huge", "h3-gzip"]);
    let started = Instant::now();
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..20, None, None)
        .await
        .unwrap();
    // Bodies are read up to the cap and no further: 2xx is a success. A body
    // still trickling at the timeout is a failed attempt (the deadline covers it).
    let metrics_after = loop {
        let metrics = lab.metrics(worker).await;
        let success = deliveries(&metrics, "success");
        let dead = deliveries(&metrics, "dead");
        if success + dead >= 60.0 || started.elapsed() > Duration::from_secs(60) {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rss_after = rss_kib(pid);
    let success = deliveries(&metrics_after, "success");
    println!(
        "h2/h3: 20 events x (trickle, 1 GiB body, gzip bomb) settled in {:?}; successes {success}; RSS {} -> {} MiB; {} connections to the 1 GiB server",
        started.elapsed(),
        rss_before / 1024,
        rss_after / 1024,
        huge.connections()
    );
    let dead = deliveries(&metrics_after, "dead");
    assert_eq!(success, 40.0, "a 2xx with a capped body is a success");
    assert_eq!(
        dead, 20.0,
        "a body trickling past the timeout fails the attempt"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    lab.assert_no_panics();
}

/// H4: a reset mid-headers, a closed port and a name that does not resolve
/// are each retried, then dead-lettered with their own error.
#[tokio::test]
async fn h4_resets_refusals_and_dns_failures_are_retried_with_distinct_errors() {
    let mut lab = lab("3");
    lab.start_worker().await;
    let reset = FaultServer::start(Behaviour::ResetMidHeaders).await;
    let targets = [
        ("h4-reset", reset.url()),
        (
            "h4-refused",
            format!("http://127.0.0.1:{}/hook", free_port()),
        ),
        ("h4-dns", "http://herald-chaos.invalid/hook".to_owned()),
    ];
    for (name, url) in &targets {
        lab.subscribe(json!({"name": name, "url": url, "events": ["chaos.*"]}))
            .await;
    }
    let ledger = Ledger::new("h4", &["h4-reset", "h4-refused", "h4-dns"]);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..10, None, None)
        .await
        .unwrap();
    let report = lab
        .settle(&ledger, &[], Duration::from_secs(60))
        .await
        .check(0);
    assert_eq!(report.dead.get("max_attempts"), Some(&30));
    let mut errors = BTreeSet::new();
    for letter in lab.dead_letters() {
        let sub = letter.header("x-herald-subscription").unwrap_or_default();
        let error = letter.header("x-herald-last-error").unwrap_or_default();
        assert_eq!(letter.header("x-herald-attempts").as_deref(), Some("3"));
        assert_eq!(letter.header("x-herald-last-status"), None);
        errors.insert((sub, error));
    }
    println!("h4: last errors {errors:?}");
    let distinct: BTreeSet<&String> = errors.iter().map(|(_, e)| e).collect();
    assert_eq!(distinct.len(), 3, "one error class per cause: {errors:?}");
    lab.assert_no_panics();
}

/// H5: `Retry-After` as seconds, an HTTP date, 0, negative and huge: the
/// retry waits at least that long, never longer than `retry_max_delay`.
#[tokio::test]
async fn h5_retry_after_is_a_floor_capped_at_the_max_delay() {
    let mut lab = Lab::new().env("HERALD__DELIVERY__RETRY_MAX_DELAY", "3s");
    lab.start_worker().await;
    let in_2s = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
    let cases: [(&str, u16, String, Duration, Duration); 5] = [
        (
            "h5-seconds",
            429,
            "2".into(),
            Duration::from_millis(1900),
            Duration::from_millis(3700),
        ),
        (
            "h5-date",
            503,
            in_2s,
            Duration::from_millis(900),
            Duration::from_millis(3700),
        ),
        (
            "h5-zero",
            503,
            "0".into(),
            Duration::ZERO,
            Duration::from_millis(900),
        ),
        (
            "h5-negative",
            429,
            "-5".into(),
            Duration::ZERO,
            Duration::from_millis(900),
        ),
        (
            "h5-huge",
            503,
            "999999".into(),
            Duration::from_millis(2300),
            Duration::from_millis(4000),
        ),
    ];
    let mut receivers = Vec::new();
    for (name, status, value, _, _) in &cases {
        let receiver = Receiver::start([Reply::status(*status).header("retry-after", value)]).await;
        lab.subscribe(hook(name, &receiver)).await;
        receivers.push(receiver);
    }
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let ledger = Ledger::new("h5", &names);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..1, None, None)
        .await
        .unwrap();
    let all: Vec<&Receiver> = receivers.iter().collect();
    lab.settle(&ledger, &all, Duration::from_secs(30))
        .await
        .check(0);
    for ((name, _, value, min, max), receiver) in cases.iter().zip(&receivers) {
        let first = receiver.next_request(Duration::from_secs(1)).await;
        let second = receiver.next_request(Duration::from_secs(1)).await;
        let gap = second.received_at - first.received_at;
        println!("h5: {name}: Retry-After {value} -> retried after {gap:?}");
        assert!(
            (*min..=*max).contains(&gap),
            "{name}: {gap:?} not within {min:?}..={max:?}"
        );
        assert_eq!(second.header("herald-attempt"), "2");
    }
    lab.assert_no_panics();
}

/// H6: 410 Gone dead-letters the delivery and disables the subscription;
/// later events are dead-lettered as `subscription_disabled`, not dropped.
#[tokio::test]
async fn h6_gone_disables_and_later_events_are_kept() {
    let mut lab = Lab::new().env("HERALD__WORKER__CONCURRENCY", "1");
    lab.start_worker().await;
    let receiver = Receiver::start([Reply::status(410)]).await;
    lab.subscribe(hook("h6", &receiver)).await;
    let ledger = Ledger::new("h6", &["h6"]);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..1, None, None)
        .await
        .unwrap();
    lab.settle(&ledger, &[&receiver], Duration::from_secs(20))
        .await;
    lab.wait_snapshots().await;
    let later = Ledger::new("h6-later", &["h6"]);
    load::spawn(&lab.amqp_url, &lab.prefix, &later, 0..20, None, None)
        .await
        .unwrap();
    let report = lab
        .settle(&later, &[&receiver], Duration::from_secs(20))
        .await
        .check(0);
    let gone = lab
        .dead_letters()
        .iter()
        .filter(|m| m.header("x-herald-reason").as_deref() == Some("gone"))
        .count();
    assert_eq!(gone, 1);
    assert_eq!(report.dead.get("subscription_disabled"), Some(&20));
    let sub = lab.call(reqwest::Method::GET, "/v1/subscriptions/h6").await;
    assert_eq!(sub["enabled"], false);
    assert_eq!(receiver.requests().len(), 1);
    lab.assert_no_panics();
}

/// H7: redirects to a reachable receiver, to the metadata address and to
/// loopback are never followed; each is a failed attempt.
#[tokio::test]
async fn h7_redirects_are_never_followed() {
    let mut lab = lab("2");
    lab.start_worker().await;
    let target = Receiver::start([]).await;
    let locations = [
        target.url(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://127.0.0.1:{}/", free_port()),
    ];
    let mut servers = Vec::new();
    let mut names = Vec::new();
    for status in [301u16, 302, 307, 308] {
        for (i, location) in locations.iter().enumerate() {
            let name = format!("h7-{status}-{i}");
            let server =
                FaultServer::start(Behaviour::status(status, &[("location", location)])).await;
            lab.subscribe(json!({"name": name, "url": server.url(), "events": ["chaos.*"]}))
                .await;
            servers.push(server);
            names.push(name);
        }
    }
    let names: Vec<&'static str> = names
        .into_iter()
        .map(|n| &*Box::leak(n.into_boxed_str()))
        .collect();
    let ledger = Ledger::new("h7", &names);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..5, None, None)
        .await
        .unwrap();
    let report = lab
        .settle(&ledger, &[&target], Duration::from_secs(60))
        .await
        .check(0);
    assert_eq!(report.dead.get("max_attempts"), Some(&(5 * names.len())));
    assert!(target.requests().is_empty(), "a redirect was followed");
    for letter in lab.dead_letters() {
        let status = letter.header("x-herald-last-status").unwrap_or_default();
        assert!(status.starts_with('3'), "last status {status}");
    }
    lab.assert_no_panics();
}

/// H8: a receiver that silently drops idle keep-alive connections after 1 s,
/// with a delivery every 1.1 s: at most a retry each, nothing lost.
#[tokio::test]
async fn h8_stale_keep_alive_connections() {
    let mut lab = Lab::new();
    let worker = lab.start_worker().await;
    let server = FaultServer::start(Behaviour::KeepAlive {
        idle: Duration::from_secs(1),
    })
    .await;
    lab.subscribe(json!({"name": "h8", "url": server.url(), "events": ["chaos.*"]}))
        .await;
    let ledger = Ledger::new("h8", &["h8"]);
    load::spawn(
        &lab.amqp_url,
        &lab.prefix,
        &ledger,
        0..10,
        Some(1.0 / 1.1),
        None,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = lab.metrics(worker).await;
    let success = deliveries(&metrics, "success");
    let retries = deliveries(&metrics, "retry");
    let ids: BTreeSet<String> = server.attempts().into_iter().map(|(_, id)| id).collect();
    println!(
        "h8: 10 events 1.1 s apart over 1 s keep-alive: {success} successes, {retries} retries, {} requests",
        server.requests()
    );
    assert_eq!(ids, ledger.ids());
    assert_eq!(success, 10.0);
    assert!(retries <= 10.0);
    lab.assert_no_panics();
}

/// H9: an endpoint down for 30 s with 2,000 deliveries pending, then back:
/// everything arrives, never more than the per-subscription cap at once,
/// and the release is spread by the jittered delay buckets.
#[tokio::test]
async fn h9_retry_storm_after_an_outage() {
    let mut lab = Lab::new()
        .env("HERALD__DELIVERY__MAX_IN_FLIGHT_PER_SUBSCRIPTION", "8")
        .env("HERALD__DELIVERY__MAX_ATTEMPTS", "100")
        .env("HERALD__DELIVERY__RETRY_INITIAL", "1s")
        .env("HERALD__DELIVERY__RETRY_MAX_DELAY", "5s");
    lab.start_worker().await;
    let receiver = Receiver::start([]).await;
    receiver.always(Reply::status(503));
    lab.subscribe(hook("h9", &receiver)).await;
    let ledger = Ledger::new("h9", &["h9"]);
    load::spawn(&lab.amqp_url, &lab.prefix, &ledger, 0..2_000, None, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let failed = receiver.requests().len();
    let during_outage = receiver.max_in_flight();
    receiver.always(Reply::ok().after(Duration::from_millis(5)));
    let recovered = Instant::now();
    let report = lab
        .settle(&ledger, &[&receiver], Duration::from_secs(120))
        .await
        .check(0);
    let ok: Vec<Instant> = receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.received_at)
        .collect();
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for at in &ok {
        *per_second
            .entry(at.saturating_duration_since(recovered).as_secs())
            .or_default() += 1;
    }
    println!(
        "h9: {failed} failed attempts during the outage, at most {during_outage} at once; after recovery: drained in {:?}, deliveries per second {:?}, at most {} at once",
        report.drained_in,
        per_second.values().collect::<Vec<_>>(),
        receiver.max_in_flight()
    );
    // Failing, the subscription is held to its cap; healthy and fast again, it
    // may use the whole worker (concurrency 20).
    assert!(
        during_outage <= 8,
        "the cap was exceeded during the outage: {during_outage}"
    );
    assert!(receiver.max_in_flight() <= 20);
    assert_eq!(report.dead_total(), 0);
    lab.assert_queues_empty().await;
    lab.assert_no_panics();
}
