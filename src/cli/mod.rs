//! The command line. Every command reads the configuration `herald serve`
//! reads (the defaults, `--config FILE`, `HERALD__SECTION__KEY`), so with the
//! server's settings it needs no flags, and talks to Redis and RabbitMQ
//! directly: the operator's tools work when the API is down or not deployed.

mod dead;
mod publish;
mod subscriptions;
mod table;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use self::{dead::DeadCommand, publish::PublishArgs, subscriptions::SubscriptionsCommand};
use crate::{
    app::{App, Role},
    config::Config,
    shutdown,
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
    /// Apply, export, list, show or delete subscriptions (GitOps).
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// List, replay or purge dead letters.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Print the effective configuration, secrets masked.
    CheckConfig,
    /// A local receiver that prints each delivery, checks its signature and
    /// answers as told: for trying herald out and rehearsing failures.
    Sink(SinkArgs),
}

impl Cli {
    pub async fn run(self, config: Config) -> anyhow::Result<()> {
        match self.command {
            Command::Serve { role } => {
                let cancel = shutdown::on_signal().context("installing signal handlers")?;
                App::build(config, role).await?.run(cancel).await
            }
            Command::Publish(args) => publish::run(&config, args).await,
            Command::Subscriptions(command) => command.run(&config).await,
            Command::Dead(command) => command.run(&config).await,
            Command::CheckConfig => {
                print!("{}", config.to_masked_toml());
                Ok(())
            }
            Command::Sink(args) => sink::run(args).await,
        }
    }
}
