//! The FAN-OUT stage: an event from `<p>.events` is decoded (invalid ->
//! `<p>.rejected`), matched against the snapshot, and each matching
//! subscription's first attempt goes down the one delivery path
//! (`Deliverer::deliver`), which makes it here when it can. The event is acked
//! only after every first attempt succeeded or its follow-up (retry, dead
//! letter, hand-off, park) is confirmed: a crash at any point only causes
//! duplicates.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::try_join_all;
use tracing::{debug, warn};

use super::reject::{self, reject};
use crate::{
    broker::{
        consumer::{Handler, Message, Settle},
        publisher::PublishError,
    },
    delivery::{
        deliverer::{Deliverer, Holder},
        task::DeliveryTask,
    },
    event::{self, Decoded, cloudevents},
    field_error::FieldError,
    metrics::RejectReason,
};

/// The `<p>.events` consumer of one broker session.
pub struct FanOut {
    deliverer: Arc<Deliverer>,
    max_event_bytes: usize,
}

impl FanOut {
    pub fn new(deliverer: Arc<Deliverer>, max_event_bytes: usize) -> Self {
        Self {
            deliverer,
            max_event_bytes,
        }
    }

    async fn fan_out(&self, message: Message) -> Result<(), PublishError> {
        let core = self.deliverer.core();
        core.metrics.events_received.inc();
        if message.body.len() > self.max_event_bytes {
            let error = format!(
                "event of {} bytes is over limits.max_event_bytes ({})",
                message.body.len(),
                self.max_event_bytes
            );
            return self.reject(&message, RejectReason::TooLarge, &error).await;
        }
        let decoded = match decode(&message) {
            Ok(decoded) => decoded,
            Err(err) => {
                let error = format!("invalid event: {err}");
                return self.reject(&message, reject::reason(&err), &error).await;
            }
        };
        // From here on the event and its canonical JSON stand for it: the received
        // bytes are not held through the attempts.
        drop(message);
        let event = decoded.event;
        if decoded.webhooks_disabled {
            debug!(event_id = %event.id, event_type = %event.event_type, "webhooks disabled by the producer");
            return Ok(());
        }
        let matches: Vec<_> = core
            .subscriptions
            .load()
            .matching(&event)
            .cloned()
            .collect();
        if matches.is_empty() {
            debug!(event_id = %event.id, event_type = %event.event_type, "no subscription matches");
            return Ok(());
        }
        let body = Bytes::from(event.to_json());
        let event = Arc::new(event);
        // Wider than the worker: what it cannot start now is shared with other workers.
        let wide = matches.len() > core.concurrency;
        let deliveries = matches.iter().map(|compiled| {
            let task = DeliveryTask::first(&compiled.sub.name, event.clone(), body.clone());
            self.deliverer
                .deliver(compiled, task, Holder::FanOut { wide })
        });
        try_join_all(deliveries).await?;
        debug!(event_id = %event.id, event_type = %event.event_type, tasks = matches.len(), "event fanned out");
        Ok(())
    }

    async fn reject(
        &self,
        message: &Message,
        reason: RejectReason,
        error: &str,
    ) -> Result<(), PublishError> {
        let core = self.deliverer.core();
        let publisher = self.deliverer.publisher();
        reject(publisher, &core.topology, message, error).await?;
        let rejected = &core.metrics.events_rejected;
        rejected.with_label_values(&[reason.as_str()]).inc();
        warn!(reason = reason.as_str(), error, "event rejected");
        Ok(())
    }
}

/// A binary-mode CloudEvent (its attributes in headers) or an envelope in the body.
fn decode(message: &Message) -> Result<Decoded, FieldError> {
    let headers = message.text_headers();
    match cloudevents::binary(headers, message.content_type(), &message.body) {
        Some(event) => Ok(Decoded {
            event: event?,
            webhooks_disabled: false,
        }),
        None => event::decode(&message.body),
    }
}

impl Handler for FanOut {
    async fn handle(self: Arc<Self>, message: Message) -> Settle {
        Settle::after(self.fan_out(message).await)
    }
}
