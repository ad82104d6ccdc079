//! Queue depths: every `every`, a passive declare per herald queue on a channel
//! of the worker's session, each queue's messages and consumers handed to
//! `report` (the worker sets `herald_queue_messages{queue}`, and counts the
//! workers sharing a rate limit). Cheap (no message is touched), never per
//! message.

use std::time::Duration;

use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{session::Session, topology::Topology};

/// Reads the depth of every queue of `topology` until `stop`.
pub async fn watch(
    session: &Session,
    topology: &Topology,
    every: Duration,
    stop: &CancellationToken,
    report: impl Fn(&str, u32, u32),
) {
    let mut channel: Option<Channel> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for queue in topology.queues() {
            if channel.as_ref().is_none_or(|c| !c.status().connected()) {
                channel = session.channel().await.ok();
            }
            let Some(ch) = &channel else { break };
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => report(&queue, q.message_count(), q.consumer_count()),
                // A missing queue closes the channel (404); the next queue gets a new one.
                Err(err) => debug!(queue, error = %err, "queue depth unavailable"),
            }
        }
    }
}
