//! `herald dead list | replay | purge`: the dead letters waiting in the log,
//! straight from RabbitMQ with the server's configuration. Replay and purge
//! show what they will act on and ask first, unless `--yes`; they then act on
//! exactly what was shown.

use std::io::{BufRead as _, Write as _};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::table;
use crate::{
    broker::{
        session::{Session, SessionSpec},
        topology::Topology,
    },
    config::Config,
    dead_letter::DeadReason,
    delivery::{
        dead::{
            log::{self, Filter, Record},
            replay,
        },
        retry::RetryPolicy,
    },
    subscriptions::store::Store,
};

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List the dead letters waiting, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Dead letters per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Where a page starts: the `next page` offset of the one before.
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into delivery, attempts starting over.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Drop dead letters on purpose.
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this subscription's.
    #[arg(long)]
    subscription: Option<String>,
    /// Only those dead-lettered for this reason (max_attempts, gone, ...).
    #[arg(long, value_parser = parse_reason)]
    reason: Option<DeadReason>,
    /// Only these events' (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    event_ids: Vec<String>,
}

fn parse_reason(text: &str) -> Result<DeadReason, String> {
    DeadReason::parse(text).ok_or_else(|| {
        let names: Vec<&str> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
        format!("{text:?} is not one of {}", names.join(", "))
    })
}

impl FilterArgs {
    fn filter(self) -> Filter {
        Filter {
            subscription: self.subscription,
            reason: self.reason,
            event_ids: self.event_ids.into_iter().collect(),
        }
    }
}

impl DeadCommand {
    pub async fn run(self, config: &Config) -> anyhow::Result<()> {
        let topology = Topology::new(
            &config.amqp.prefix,
            config.amqp.queue_type,
            config.amqp.delivery_limit.get(),
            RetryPolicy::from_config(&config.delivery).buckets(),
        );
        let spec = SessionSpec {
            name: "cli",
            declare: None,
            consume: false,
        };
        let session = Session::open(&config.amqp, spec).await?;
        let done = self.act(config, &session, &topology).await;
        session.close().await;
        done
    }

    async fn act(
        self,
        config: &Config,
        session: &Session,
        topology: &Topology,
    ) -> anyhow::Result<()> {
        match self {
            Self::List {
                filter,
                limit,
                cursor,
                json,
            } => {
                let page = log::list(session, topology, &filter.filter(), cursor, limit).await?;
                if json {
                    let items: Vec<Value> = page.records.iter().map(Record::json).collect();
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    print!("{}", records_table(&page.records));
                }
                if let Some(next) = page.next {
                    eprintln!("next page: --cursor {next}");
                }
                Ok(())
            }
            Self::Replay { filter, yes } => {
                let records = log::select(session, topology, &filter.filter(), None).await?;
                if !confirmed("Replay", &records, yes)? {
                    bail!("nothing replayed (answer y, or pass --yes)");
                }
                let store = Store::new(&config.redis)
                    .with_context(|| format!("redis.url: {}", config.redis.url.masked()))?;
                replay::replay(session, topology, &store, &records).await?;
                print_settled("replayed", &records);
                Ok(())
            }
            Self::Purge { filter, yes } => {
                let records = log::select(session, topology, &filter.filter(), None).await?;
                if !confirmed("Purge", &records, yes)? {
                    bail!("nothing purged (answer y, or pass --yes)");
                }
                replay::purge(session, topology, &records).await?;
                print_settled("purged", &records);
                Ok(())
            }
        }
    }
}

/// Shows `records` and asks whether to go on; an empty selection needs no answer.
fn confirmed(verb: &str, records: &[Record], yes: bool) -> anyhow::Result<bool> {
    if records.is_empty() {
        println!("no dead letters match");
        return Ok(true);
    }
    if yes {
        return Ok(true);
    }
    print!("{}", records_table(records));
    print!("{verb} these {} dead letters? [y/N] ", records.len());
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_settled(how: &str, records: &[Record]) {
    for record in records {
        println!(
            "{how}  {}  {}  {}",
            record.offset,
            record.subscription.as_deref().unwrap_or("-"),
            record.event_id.as_deref().unwrap_or("-"),
        );
    }
}

fn records_table(records: &[Record]) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let columns = [
        "offset",
        "died_at",
        "subscription",
        "reason",
        "attempts",
        "last_status",
        "event_type",
        "event_id",
        "last_error",
    ];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let json = r.json();
            columns.iter().map(|c| text(&json[c])).collect()
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    table::render(&headers, &rows)
}
