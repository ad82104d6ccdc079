//! `herald subscriptions`: GitOps for subscriptions. `apply` brings the store
//! to what a file says (checking every entry before writing any), `export`
//! writes a file `apply` takes back, and `list`, `get` and `delete` work on one
//! deployment's store. Straight to Redis with the server's configuration, with
//! the same validation and the same SSRF guard as the API.

use std::{io::Read as _, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use serde_json::{Map, Value};

use super::table;
use crate::{
    config::Config,
    delivery::egress::EgressPolicy,
    subscriptions::{
        apply::{self, Change},
        file,
        model::Subscription,
        store::Store,
    },
};

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// Create or change the subscriptions in FILE (YAML or JSON: one, a list,
    /// or a `subscriptions:` list); prints created, changed, unchanged, pruned.
    Apply {
        /// The file, or `-` for standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Also delete the subscriptions the file does not name.
        #[arg(long)]
        prune: bool,
        /// Print what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print every subscription as a file `apply` takes back.
    Export {
        /// Include each signing secret (keep the file as secret as they are).
        #[arg(long)]
        with_secrets: bool,
    },
    /// List the subscriptions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one subscription (never its secret).
    Get {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete one subscription.
    Delete { name: String },
}

impl SubscriptionsCommand {
    pub async fn run(self, config: &Config) -> anyhow::Result<()> {
        let store = Store::new(&config.redis)
            .with_context(|| format!("redis.url: {}", config.redis.url.masked()))?;
        match self {
            Self::Apply {
                file,
                prune,
                dry_run,
            } => apply(config, &store, &file, prune, dry_run).await,
            Self::Export { with_secrets } => {
                let subs = store.list().await?;
                let entries = subs.iter().map(|sub| exported(sub, with_secrets)).collect();
                print!("{}", file::document(entries));
                Ok(())
            }
            Self::List { json } => list(&store, json).await,
            Self::Get { name, json } => get(&store, &name, json).await,
            Self::Delete { name } => {
                if !store.delete(&name).await? {
                    bail!("no subscription named {name:?}");
                }
                println!("deleted    {name}");
                Ok(())
            }
        }
    }
}

async fn apply(
    config: &Config,
    store: &Store,
    path: &PathBuf,
    prune: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let text = read(path)?;
    let entries = file::parse(&text).with_context(|| format!("{}", path.display()))?;
    let stored = store.records().await?;
    let policy = EgressPolicy::from_config(&config.delivery);
    let steps = match apply::plan(&entries, &stored, prune, |sub| {
        policy.check_subscription(sub)
    }) {
        Ok(steps) => steps,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            bail!(
                "{} of {} subscriptions in {} are invalid; nothing was written",
                errors.len(),
                entries.len(),
                path.display()
            );
        }
    };
    if !dry_run {
        apply::apply(&steps, store).await?;
    }
    for step in &steps {
        println!("{step}");
    }
    if dry_run {
        println!("(dry run: nothing was written)");
    } else if steps.iter().all(|s| s.change == Change::Unchanged) {
        println!("(nothing to change)");
    }
    Ok(())
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the subscriptions from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A subscription as `apply` takes it: its public fields, and its secret if asked.
fn exported(sub: &Subscription, with_secret: bool) -> Map<String, Value> {
    let Value::Object(mut fields) = sub.public_json() else {
        unreachable!("a subscription is a JSON object");
    };
    if with_secret {
        fields.insert("secret".into(), sub.secret.expose().into());
    }
    fields
}

async fn list(store: &Store, json: bool) -> anyhow::Result<()> {
    let subs = store.list().await?;
    if json {
        let items: Vec<Value> = subs.iter().map(Subscription::public_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = subs
        .iter()
        .map(|s| {
            let events: Vec<&str> = s.events.iter().map(|e| e.as_str()).collect();
            vec![
                s.name.clone(),
                s.enabled.to_string(),
                s.format.as_str().to_owned(),
                events.join(","),
                s.selector.clone().unwrap_or_default(),
                s.url.clone(),
            ]
        })
        .collect();
    let headers = ["NAME", "ENABLED", "FORMAT", "EVENTS", "SELECTOR", "URL"];
    print!("{}", table::render(&headers, &rows));
    Ok(())
}

async fn get(store: &Store, name: &str, json: bool) -> anyhow::Result<()> {
    let (sub, _) = store
        .get(name)
        .await?
        .ok_or_else(|| anyhow!("no subscription named {name:?}"))?;
    let public = sub.public_json();
    if json {
        println!("{}", serde_json::to_string_pretty(&public)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = public
        .as_object()
        .into_iter()
        .flatten()
        .map(|(field, value)| {
            let shown = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            vec![field.clone(), shown]
        })
        .collect();
    print!("{}", table::render(&["FIELD", "VALUE"], &rows));
    Ok(())
}
