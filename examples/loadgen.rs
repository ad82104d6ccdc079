//! Measures end-to-end throughput of a running herald: starts a receiver,
//! points `--fanout` subscriptions at it, publishes `--events` persistent
//! events of `--size` bytes over AMQP with confirms, and reports deliveries/s
//! from the first publish to the last delivery.
//!
//! cargo run --release --example loadgen -- --token T [--events 10000] [--fanout 1]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{Router, http::StatusCode};
use clap::Parser;
use lapin::{BasicProperties, Connection, ConnectionProperties, options::*};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, env = "HERALD__API__TOKEN")]
    token: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[arg(long, default_value = "herald")]
    prefix: String,
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    fanout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async { StatusCode::NO_CONTENT }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let names: Vec<String> = (0..args.fanout).map(|i| format!("loadgen-{i}")).collect();
    for name in &names {
        let response = http
            .put(format!("{}/v1/subscriptions/{name}", args.api))
            .bearer_auth(&args.token)
            .json(&json!({"url": url, "events": ["load.*"]}))
            .send()
            .await
            .context("creating a subscription")?;
        anyhow::ensure!(
            response.status().is_success(),
            "PUT subscription: {}",
            response.status()
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // every worker's snapshot

    let conn = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let padding = "x".repeat(args.size.saturating_sub(120));
    let exchange = format!("{}.events", args.prefix);
    let started = Instant::now();
    let mut pending = Vec::with_capacity(1000);
    for i in 0..args.events {
        let body =
            json!({"type": "load.test", "id": format!("load-{i}"), "data": {"pad": padding}})
                .to_string();
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                "load.test".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?;
        pending.push(confirm);
        if pending.len() == 1000 {
            for c in pending.drain(..) {
                anyhow::ensure!(c.await?.is_ack(), "a publish was nacked");
            }
        }
    }
    for c in pending.drain(..) {
        anyhow::ensure!(c.await?.is_ack(), "a publish was nacked");
    }
    let published = started.elapsed();
    let want = args.events * args.fanout;
    while received.load(Ordering::Relaxed) < want {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "timed out: {} of {want}",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "events {} x fan-out {} = {want} deliveries in {:.2}s: {:.0} deliveries/s (publishing took {:.2}s)",
        args.events,
        args.fanout,
        elapsed.as_secs_f64(),
        want as f64 / elapsed.as_secs_f64(),
        published.as_secs_f64()
    );
    for name in &names {
        let _ = http
            .delete(format!("{}/v1/subscriptions/{name}", args.api))
            .bearer_auth(&args.token)
            .send()
            .await;
    }
    Ok(())
}
