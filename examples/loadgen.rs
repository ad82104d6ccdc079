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
    /// Measure the ceiling instead of herald: a bare consume -> POST -> ack loop
    /// on a queue of this type (quorum|classic), same receiver, same load.
    #[arg(long)]
    ceiling: Option<String>,
    /// Concurrency (and prefetch) of the ceiling loop.
    #[arg(long, default_value_t = 128)]
    concurrency: u16,
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
    let (exchange, routing_key) = match &args.ceiling {
        Some(queue_type) => {
            let queue = ceiling(&args, queue_type, url.clone()).await?;
            (String::new(), queue)
        }
        None => (format!("{}.events", args.prefix), "load.test".to_owned()),
    };
    for name in names.iter().filter(|_| args.ceiling.is_none()) {
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
    let started = Instant::now();
    let mut pending = Vec::with_capacity(1000);
    for i in 0..args.events {
        let body =
            json!({"type": "load.test", "id": format!("load-{i}"), "data": {"pad": padding}})
                .to_string();
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
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
        "{}: events {} x fan-out {} = {want} deliveries",
        args.ceiling
            .as_deref()
            .map_or("herald".to_owned(), |q| format!("ceiling ({q})")),
        args.events,
        args.fanout,
    );
    println!(
        "  {:.2}s: {:.0} deliveries/s (publishing took {:.2}s)",
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

/// The least any webhook worker must do: consume a persistent message with
/// manual ack, POST it, ack. Declares a fresh queue and returns its name.
async fn ceiling(args: &Args, queue_type: &str, url: String) -> anyhow::Result<String> {
    use futures_util::StreamExt;
    let queue = format!("ceiling-{}", uuid::Uuid::new_v4().simple());
    let conn = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString(queue_type.into()),
    );
    arguments.insert(
        "x-expires".into(),
        lapin::types::AMQPValue::LongLongInt(600_000),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    channel
        .basic_qos(args.concurrency, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    tokio::spawn(async move {
        let _keep = conn;
        while let Some(Ok(delivery)) = consumer.next().await {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let sent = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(delivery.data.clone())
                    .send()
                    .await;
                if sent.is_ok() {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
            });
        }
    });
    Ok(queue)
}
