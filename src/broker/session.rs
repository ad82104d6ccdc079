//! Connections to RabbitMQ. A `Session` is one publishing connection (a
//! confirm-mode channel, topology declared) and, for workers, a separate
//! consuming connection: a memory alarm blocks publishers and must not stall
//! acks. Anything failing on a session trips its `fault` token; its owner
//! then drops it and opens a new one (`reconnect`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt;
use lapin::{
    Connection, ConnectionProperties, DefaultConnectionBuilder,
    options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions},
    protocol::AMQPErrorKind,
    tcp::{OwnedIdentity, OwnedTLSConfig},
    types::{FieldTable, LongString, ShortString},
    uri::AMQPUri,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{consumer::Consumer, publisher::Publisher, topology::Topology};
use crate::config::{AmqpConfig, NodeUrls, TlsConfig};

/// How long one setup step (a connection handshake, declaring the topology,
/// starting a consumer) may take. A broker that takes the TCP connection but
/// answers nothing (frozen, or still booting) would otherwise hold the session
/// open forever: heartbeats only start once the handshake is done, and an
/// unanswered declare keeps a live connection waiting.
const SETUP_STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest AMQP frame herald offers to take and send when `amqp.url` does
/// not name one (`?frame_max=`); the broker may lower it, never raise it.
/// lapin keeps two ring buffers of 32 frames per connection, so RabbitMQ's
/// 128 KiB default would cost 8 MiB per connection (three in `serve`), written
/// in full on connect. Frame size only splits bodies (events are far smaller
/// than this anyway); what must fit in one frame is a message's properties and
/// headers, which herald keeps small and never reads from producers.
const DEFAULT_FRAME_MAX: u32 = 32 * 1024;

/// How long closing a session may take before its connections are just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

async fn step<T>(what: &str, future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(SETUP_STEP_TIMEOUT, future)
        .await
        .map_err(|_| anyhow!("{what}: no answer from the broker within {SETUP_STEP_TIMEOUT:?}"))?
}

/// What a session is for.
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec<'a> {
    /// Names it in logs and its connections in the broker's management UI
    /// (`herald <name> publish`, `herald <name> consume`).
    pub name: &'static str,
    /// Declares herald's exchange and queues once connected.
    pub declare: Option<&'a Topology>,
    /// Opens a second connection to consume on.
    pub consume: bool,
}

pub struct Session {
    publish: Connection,
    consume: Option<Connection>,
    publisher: Publisher,
    fault: CancellationToken,
    /// For connections of their own (`stream`), whose failures end only them.
    config: AmqpConfig,
}

impl Session {
    /// Connects and does what `spec` asks; every step is bounded in time.
    pub async fn open(config: &AmqpConfig, spec: SessionSpec<'_>) -> anyhow::Result<Self> {
        let fault = CancellationToken::new();
        let opened = Self::establish(config, spec, &fault).await;
        if opened.is_err() {
            // Ends the connection watchers of whatever was opened before the failure.
            fault.cancel();
        }
        opened
    }

    async fn establish(
        config: &AmqpConfig,
        spec: SessionSpec<'_>,
        fault: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let name = spec.name;
        let blocked = Arc::new(AtomicBool::new(false));
        let publish_name = format!("herald {name} publish");
        let publish = connect(config, &publish_name, fault, Some(blocked.clone())).await?;
        let channel = step("opening the publishing channel", async {
            let channel = publish.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("enabling publisher confirms")?;
            Ok(channel)
        })
        .await?;
        if let Some(topology) = spec.declare {
            step("declaring the topology", topology.declare(&channel)).await?;
        }
        let consume = if spec.consume {
            let consume_name = format!("herald {name} consume");
            Some(connect(config, &consume_name, fault, None).await?)
        } else {
            None
        };
        Ok(Self {
            publish,
            consume,
            publisher: Publisher::new(channel, config.confirm_timeout, blocked, fault.clone()),
            fault: fault.clone(),
            config: config.clone(),
        })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Returns once the session has failed: a connection, a consumer, or a
    /// publish that showed it broken. Only `broker` trips the fault token.
    pub async fn failed(&self) {
        self.fault.cancelled().await;
    }

    /// A plain channel on the publishing connection, for housekeeping like queue depths.
    pub async fn channel(&self) -> lapin::Result<lapin::Channel> {
        self.publish.create_channel().await
    }

    /// Starts consuming `queue` on a channel of its own with `prefetch` unacked messages.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> anyhow::Result<Consumer> {
        let (_, consumer) = self
            .open_consumer(queue, prefetch, FieldTable::default())
            .await?;
        Ok(Consumer::new(consumer, self.fault.clone(), prefetch))
    }

    /// A connection of its own, outside the session: its failure ends only
    /// it. Whoever opens it closes it.
    pub(super) async fn detached_connection(&self, name: &str) -> anyhow::Result<Connection> {
        let unwatched = CancellationToken::new();
        let conn = connect(&self.config, name, &unwatched, None).await;
        // Nobody waits on its fault: its watcher only has to end.
        unwatched.cancel();
        conn
    }

    /// A consumer of `queue` on a new channel of the consuming connection.
    async fn open_consumer(
        &self,
        queue: &str,
        prefetch: u16,
        arguments: FieldTable,
    ) -> anyhow::Result<(lapin::Channel, lapin::Consumer)> {
        let conn = self
            .consume
            .as_ref()
            .context("this session was opened without a consuming connection")?;
        consume_on(conn, queue, prefetch, arguments).await
    }

    /// Closes both connections; whatever is unacked goes back to its queue.
    ///
    /// Best effort, and bounded: a connection the broker dropped (a broker
    /// restart resets every socket) may never answer the close, and waiting
    /// on it kept a worker from ever reconnecting.
    pub async fn close(&self) {
        let close = async {
            if let Some(consume) = &self.consume {
                let _ = consume
                    .close(200, ShortString::from("herald shutting down"))
                    .await;
            }
            let _ = self
                .publish
                .close(200, ShortString::from("herald shutting down"))
                .await;
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
            warn!(
                timeout_ms = CLOSE_TIMEOUT.as_millis() as u64,
                "the broker did not answer closing the session; its connections are dropped"
            );
        }
    }
}

/// A consumer of `queue` on a new channel of `conn` with `prefetch` unacked
/// messages; `arguments` go with `basic.consume` (a stream's `x-stream-offset`).
pub(super) async fn consume_on(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    arguments: FieldTable,
) -> anyhow::Result<(lapin::Channel, lapin::Consumer)> {
    step(&format!("consuming {queue}"), async {
        let channel = conn
            .create_channel()
            .await
            .context("opening a consuming channel")?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .context("setting the prefetch")?;
        let consumer = channel
            .basic_consume(
                ShortString::from(queue),
                // No consumer tag: the broker makes one up.
                ShortString::default(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .with_context(|| format!("consuming {queue}"))?;
        Ok((channel, consumer))
    })
    .await
}

/// Opens a connection to the first node of `amqp.url` that answers (each try
/// bounded in time); its failure trips `fault`, and later connections start
/// at the next node. `blocked`, when given, follows the broker's
/// blocked/unblocked notices for it.
async fn connect(
    config: &AmqpConfig,
    name: &str,
    fault: &CancellationToken,
    blocked: Option<Arc<AtomicBool>>,
) -> anyhow::Result<Connection> {
    let nodes = &config.url;
    let mut failures = Vec::new();
    for (index, url) in nodes.in_turn() {
        let properties =
            ConnectionProperties::default().with_connection_name(LongString::from(name));
        let connecting = async {
            let uri = amqp_uri(url.expose())?;
            Ok(DefaultConnectionBuilder::new()?
                .with_uri(uri)
                .with_properties(properties)
                .with_tls_config(tls_config(&config.tls)?)
                .connect()
                .await?)
        };
        match step("connecting", connecting).await {
            Ok(conn) => {
                nodes.connected(index);
                watch(&conn, name, fault, blocked, nodes.clone(), index);
                return Ok(conn);
            }
            Err(err) => failures.push(format!("{}: {err:#}", url.masked())),
        }
    }
    Err(anyhow!("connecting to {}", failures.join("; ")))
}

/// Follows `conn`'s events until `fault` is tripped: a failure trips it.
fn watch(
    conn: &Connection,
    name: &str,
    fault: &CancellationToken,
    blocked: Option<Arc<AtomicBool>>,
    nodes: NodeUrls,
    index: usize,
) {
    // Errors (socket loss, missed heartbeats, a forced close) arrive as events.
    let mut events = conn.events_listener();
    let fault = fault.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = fault.cancelled() => return,
                event = events.next() => match event {
                    Some(lapin::Event::Error(err)) if closed_one_channel(&err) => {
                        // A channel the broker closed (a passive declare of a missing
                        // queue, a consumer timeout): its owner sees that and acts;
                        // the connection and the other channels are fine.
                        debug!(connection = %name, error = %err, "broker closed a channel");
                    }
                    Some(lapin::Event::Error(err)) => {
                        warn!(connection = %name, error = %err, "broker connection failed");
                        nodes.lost(index);
                        fault.cancel();
                        return;
                    }
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        warn!(connection = %name, reason, "broker blocked the connection");
                        if let Some(blocked) = &blocked {
                            blocked.store(true, Ordering::Relaxed);
                        }
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        info!(connection = %name, "broker unblocked the connection");
                        if let Some(blocked) = &blocked {
                            blocked.store(false, Ordering::Relaxed);
                        }
                    }
                    Some(_) => {}
                    None => {
                        nodes.lost(index);
                        fault.cancel();
                        return;
                    }
                }
            }
        }
    });
}

/// The `[tls]` files as lapin takes them: CA certificates added to the
/// system's roots, and the client certificate for mutual TLS.
fn tls_config(tls: &TlsConfig) -> anyhow::Result<OwnedTLSConfig> {
    let files = tls.read()?;
    Ok(OwnedTLSConfig {
        cert_chain: files.ca,
        identity: files
            .identity
            .map(|(pem, key)| OwnedIdentity::PKCS8 { pem, key }),
    })
}

/// A soft error closes one channel; a hard one (or a socket error) the connection.
fn closed_one_channel(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(_))
    )
}

/// `url` parsed as lapin would, with [`DEFAULT_FRAME_MAX`] unless it sets `frame_max`.
fn amqp_uri(url: &str) -> anyhow::Result<AMQPUri> {
    let mut uri: AMQPUri = url.parse().map_err(anyhow::Error::msg)?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_defaults_unless_the_url_sets_it() {
        let uri = amqp_uri("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10").unwrap();
        assert_eq!(uri.query.frame_max, Some(DEFAULT_FRAME_MAX));
        assert_eq!(uri.query.heartbeat, Some(10));
        let uri = amqp_uri("amqp://127.0.0.1/%2f?frame_max=131072").unwrap();
        assert_eq!(uri.query.frame_max, Some(131_072));
    }

    #[test]
    fn an_invalid_url_is_an_error() {
        assert!(amqp_uri("amqp://127.0.0.1/%2f?frame_max=lots").is_err());
    }
}
