//! Connections to RabbitMQ. A `Session` is one publishing connection (a
//! confirm-mode channel, topology declared) and, for workers, a separate
//! consuming connection: a memory alarm blocks publishers and must not stall
//! acks. Anything failing on a session trips its `fault` token; its owner
//! then drops it and opens a new one with backoff.

use std::time::Duration;

use anyhow::Context as _;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::{
    Connection, ConnectionProperties, Consumer,
    options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions},
    types::{FieldTable, LongString, ShortString},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{publisher::Publisher, topology::Topology};
use crate::config::AmqpConfig;

pub struct Session {
    publish: Connection,
    consume: Option<Connection>,
    publisher: Publisher,
    fault: CancellationToken,
}

impl Session {
    /// Connects, declares `topology` when given, and with `consume` opens the consuming connection too.
    pub async fn open(
        config: &AmqpConfig,
        topology: Option<&Topology>,
        name: &str,
        consume: bool,
    ) -> anyhow::Result<Self> {
        let fault = CancellationToken::new();
        let publish = connect(config, &format!("herald {name} publish"), &fault).await?;
        let channel = publish
            .create_channel()
            .await
            .context("opening the publishing channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        if let Some(topology) = topology {
            topology.declare(&channel).await?;
        }
        let consume = if consume {
            Some(connect(config, &format!("herald {name} consume"), &fault).await?)
        } else {
            None
        };
        Ok(Self {
            publish,
            consume,
            publisher: Publisher::new(channel, config.confirm_timeout),
            fault,
        })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Cancelled when a connection of this session failed: the session is done.
    pub fn fault(&self) -> &CancellationToken {
        &self.fault
    }

    /// A plain channel on the publishing connection, for housekeeping like queue depths.
    pub async fn channel(&self) -> lapin::Result<lapin::Channel> {
        self.publish.create_channel().await
    }

    /// Starts consuming `queue` on a channel of its own with `prefetch` unacked messages.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> anyhow::Result<Consumer> {
        let conn = self
            .consume
            .as_ref()
            .context("this session was opened without a consuming connection")?;
        let channel = conn
            .create_channel()
            .await
            .context("opening a consuming channel")?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .context("setting the prefetch")?;
        channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {queue}"))
    }

    /// Closes both connections; whatever is unacked goes back to its queue.
    pub async fn close(&self) {
        if let Some(consume) = &self.consume {
            let _ = consume
                .close(200, ShortString::from("herald shutting down"))
                .await;
        }
        let _ = self
            .publish
            .close(200, ShortString::from("herald shutting down"))
            .await;
    }
}

async fn connect(
    config: &AmqpConfig,
    name: &str,
    fault: &CancellationToken,
) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    let conn = Connection::connect(config.url.expose(), properties)
        .await
        .with_context(|| format!("connecting to {}", config.url.masked()))?;
    // Errors (socket loss, missed heartbeats, a forced close) arrive as events.
    let mut events = conn.events_listener();
    let fault = fault.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = fault.cancelled() => return,
                event = events.next() => match event {
                    Some(lapin::Event::Error(err)) => {
                        warn!(connection = %name, error = %err, "broker connection failed");
                        fault.cancel();
                        return;
                    }
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        warn!(connection = %name, reason, "broker blocked the connection");
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        info!(connection = %name, "broker unblocked the connection");
                    }
                    Some(_) => {}
                    None => {
                        fault.cancel();
                        return;
                    }
                }
            }
        }
    });
    Ok(conn)
}

/// Reconnect delays: fast first, capped, jittered so a fleet does not stampede a restarted broker.
pub fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
