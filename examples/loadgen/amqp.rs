//! The producer side over AMQP: stamped 1 KiB persistent events published
//! with confirms, and a reader of herald's outcome events.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm, options::*,
    types::FieldTable,
};
use serde_json::json;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::stats::unix_nanos;

/// Publishes not yet confirmed before `publish` waits: enough to keep the broker
/// busy, few enough that a closed loop measures delivery, not a queue filling up.
const UNCONFIRMED: usize = 1000;

/// One event's JSON: type `load.test`, id `load-<seq>`, and in `data` its
/// sequence number, its send time (unix ns, read now) and padding.
pub fn event(seq: u64, pad: &str) -> Vec<u8> {
    json!({
        "type": "load.test",
        "id": format!("load-{seq}"),
        "data": {"seq": seq, "sent_ns": unix_nanos(), "pad": pad},
    })
    .to_string()
    .into_bytes()
}

/// Padding that brings an event to about `size` bytes.
pub fn padding(size: usize) -> String {
    "x".repeat(size.saturating_sub(event(u64::from(u32::MAX), "").len()))
}

pub struct Publisher {
    _connection: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
    pad: String,
    confirms: mpsc::Sender<PublisherConfirm>,
    checker: JoinHandle<anyhow::Result<()>>,
}

impl Publisher {
    pub async fn connect(
        url: &str,
        exchange: &str,
        routing_key: &str,
        size: usize,
    ) -> anyhow::Result<Self> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // Confirms are awaited off the publishing task, in order, so an open-loop
        // schedule is not held up by a confirm round trip; the bounded channel still
        // stops a closed loop from running ahead of the broker.
        let (confirms, mut pending) = mpsc::channel::<PublisherConfirm>(UNCONFIRMED);
        let checker = tokio::spawn(async move {
            while let Some(confirm) = pending.recv().await {
                anyhow::ensure!(confirm.await?.is_ack(), "a publish was nacked");
            }
            Ok(())
        });
        Ok(Self {
            _connection: connection,
            channel,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            pad: padding(size),
            confirms,
            checker,
        })
    }

    /// Publishes event `seq`, stamped with the time of this call.
    pub async fn publish(&self, seq: u64) -> anyhow::Result<()> {
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &event(seq, &self.pad),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?;
        // A closed channel means the checker stopped on an error: `finish` reports it.
        let _ = self.confirms.send(confirm).await;
        Ok(())
    }

    /// Waits for every confirm; fails if any publish was nacked.
    pub async fn finish(self) -> anyhow::Result<()> {
        drop(self.confirms);
        self.checker.await?
    }
}

/// What an upstream system reading herald's outcome events does: a queue of its
/// own bound to `<prefix>.outcomes` for every routing key, consumed without
/// acks. Returns the running count of outcome events taken.
pub async fn count_outcomes(amqp: &str, prefix: &str) -> anyhow::Result<Arc<AtomicU64>> {
    let connection = Connection::connect(amqp, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await?;
    let exchange = format!("{prefix}.outcomes");
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding to {exchange} (is outcomes.enabled set?)"))?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let taken = Arc::new(AtomicU64::new(0));
    let counter = taken.clone();
    tokio::spawn(async move {
        let _keep = connection;
        while let Some(Ok(_)) = consumer.next().await {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(taken)
}
