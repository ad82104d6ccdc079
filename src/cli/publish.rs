//! `herald publish`: one event to `<prefix>.events` over AMQP, as a producer
//! would publish it, validated first so a typo is an error now and not a line
//! in `<prefix>.rejected` later.

use std::io::Read as _;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value};

use crate::{
    broker::{
        headers::Headers,
        publisher::Destination,
        session::{Session, SessionSpec},
        topology::Topology,
    },
    config::Config,
    event,
};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event type, e.g. deployment.failed.
    #[arg(long = "type")]
    pub event_type: String,
    /// A label, repeatable: --label env=prod --label project=web.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// The event's data as JSON; `-` reads it from stdin.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub source: Option<String>,
}

pub async fn run(config: &Config, args: PublishArgs) -> anyhow::Result<()> {
    let mut event = Map::new();
    event.insert("type".into(), Value::String(args.event_type.clone()));
    if let Some(id) = args.id {
        event.insert("id".into(), Value::String(id));
    }
    if let Some(source) = args.source {
        event.insert("source".into(), Value::String(source));
    }
    let mut labels = Map::new();
    for label in &args.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label {label:?}: expected key=value"))?;
        labels.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    if !labels.is_empty() {
        event.insert("labels".into(), Value::Object(labels));
    }
    if let Some(data) = args.data {
        let text = if data == "-" {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .context("reading --data from stdin")?;
            buf
        } else {
            data
        };
        let value: Value = serde_json::from_str(&text).context("--data is not valid JSON")?;
        event.insert("data".into(), value);
    }
    let body = serde_json::to_vec(&Value::Object(event))?;
    // Validate here so a typo is an error now, not a line in <prefix>.rejected later.
    let decoded = event::decode(&body).map_err(|e| anyhow::anyhow!("invalid event: {e}"))?;
    let body = decoded.event.to_json();
    // A producer publishes; declaring is `herald serve`'s job (with its queue arguments).
    let spec = SessionSpec {
        name: "publish",
        declare: None,
        consume: false,
    };
    let session = Session::open(&config.amqp, spec).await?;
    let exchange = Topology::events_of(&config.amqp.prefix);
    let to = Destination::Exchange {
        name: &exchange,
        routing_key: &decoded.event.event_type,
    };
    let result = session.publisher().publish(to, &body, Headers::new()).await;
    session.close().await;
    result.with_context(|| {
        format!("publishing to {exchange} (does `herald serve` run with this amqp.prefix?)")
    })?;
    println!("{}", decoded.event.id);
    Ok(())
}
