//! The `<p>.dead` consumer: every message that reaches the dead-letter queue
//! (herald's own dead letters, messages RabbitMQ gave up on after
//! `amqp.delivery_limit` deliveries, and any left there before an upgrade) is
//! copied into the stream `<p>.dead.log`, confirmed, and only then acked.
//! The log keeps it where it can be listed and replayed without taking it off
//! a queue.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tracing::warn;

use super::now_millis;
use crate::delivery::task::SUBSCRIPTION_HEADER;
use crate::{
    broker::{
        consumer::{Handler, Message, Settle},
        publisher::{Destination, PublishError, Publisher},
        topology::Topology,
    },
    dead_letter::{DIED_AT_HEADER, DeadReason, REASON_HEADER},
    metrics::{DeliveryOutcome, Metrics},
};

/// The archive of one broker session.
pub struct Archive {
    publisher: Publisher,
    topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    /// The log is declared on the first dead letter, once per session.
    declared: AtomicBool,
}

impl Archive {
    pub fn new(publisher: Publisher, topology: Arc<Topology>, metrics: Arc<Metrics>) -> Self {
        Self {
            publisher,
            topology,
            metrics,
            declared: AtomicBool::new(false),
        }
    }

    async fn archive(&self, message: Message) -> Result<(), PublishError> {
        let log = self.topology.dead_log();
        if !self.declared.load(Ordering::Acquire) {
            self.publisher.declare_stream(&log).await?;
            self.declared.store(true, Ordering::Release);
        }
        let mut headers = message.headers();
        if message.header_int(DIED_AT_HEADER).is_none() {
            headers = headers.int(DIED_AT_HEADER, now_millis());
        }
        let poison = message.header_text(REASON_HEADER).is_none();
        if poison {
            // RabbitMQ moved it here itself: it was handed out `amqp.delivery_limit`
            // times without an ack, crashing or stalling the workers that took it.
            headers = headers.text(REASON_HEADER, DeadReason::Poison.as_str());
        }
        self.publisher
            .publish(Destination::Queue(&log), &message.body, headers)
            .await?;
        if poison {
            warn!(queue = %self.topology.dead(), "message moved to the dead letters by the broker (poison)");
            let subscription = message.header_text(SUBSCRIPTION_HEADER).unwrap_or_default();
            self.metrics.delivered(DeliveryOutcome::Dead, &subscription);
            let dead = &self.metrics.dead_letters;
            dead.with_label_values(&[DeadReason::Poison.as_str()]).inc();
        }
        Ok(())
    }
}

impl Handler for Archive {
    async fn handle(self: Arc<Self>, message: Message) -> Settle {
        Settle::after(self.archive(message).await)
    }
}
