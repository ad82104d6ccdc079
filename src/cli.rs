//! The command line: `serve`, `publish`, `check-config` and `sink`. Every
//! command takes `--config FILE`; `HERALD__SECTION__KEY` overrides either.

use std::{io::Read as _, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::{
    app::{App, Role},
    broker::{
        headers::Headers,
        publisher::Destination,
        session::{Session, SessionSpec},
        topology::Topology,
    },
    config::Config,
    event, shutdown,
    sink::{self, SinkArgs},
};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Durable, queue-backed webhook delivery"
)]
pub struct Cli {
    /// A TOML file layered over the defaults (config/herald.toml documents every key).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run herald: the API, the worker, or both.
    Serve {
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Publish one event to <prefix>.events over AMQP, as a producer would.
    Publish(PublishArgs),
    /// Print the effective configuration, secrets masked.
    CheckConfig,
    /// A local receiver that prints each delivery, checks its signature and
    /// answers as told: for trying herald out and rehearsing failures.
    Sink(SinkArgs),
}

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

impl Cli {
    pub async fn run(self, config: Config) -> anyhow::Result<()> {
        match self.command {
            Command::Serve { role } => {
                let cancel = shutdown::on_signal().context("installing signal handlers")?;
                App::build(config, role).await?.run(cancel).await
            }
            Command::Publish(args) => publish(&config, args).await,
            Command::CheckConfig => {
                print!("{}", config.to_masked_toml());
                Ok(())
            }
            Command::Sink(args) => sink::run(args).await,
        }
    }
}

async fn publish(config: &Config, args: PublishArgs) -> anyhow::Result<()> {
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
