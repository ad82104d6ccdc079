//! The FAN-OUT stage: an event from `<p>.events` is decoded (invalid ->
//! `<p>.rejected`), matched against the snapshot, and each matching enabled
//! subscription gets its first attempt right here when a delivery slot and a
//! place under its in-flight cap are free (no second broker hop on the hot
//! path), or else a task on `<p>.deliveries`. A disabled subscription's task
//! is dead-lettered as `subscription_disabled`. The event is acked only after
//! every first attempt succeeded or its follow-up (retry, dead letter, task)
//! is confirmed: a crash at any point only causes duplicates.

use std::sync::Arc;

use tokio::sync::Semaphore;

use bytes::Bytes;
use futures_util::future::try_join_all;
use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{envelope, reject::reject};
use crate::{
    broker::{
        consumer::Handler,
        publisher::{PublishError, Publisher},
        topology::Topology,
    },
    delivery::{
        outcome::DeadReason,
        task::DeliveryTask,
        worker::{Deliverer, attempt, finish},
    },
    metrics::Metrics,
    subscriptions::snapshot::Subscriptions,
};

pub struct FanOut {
    pub subscriptions: Arc<Subscriptions>,
    pub topology: Arc<Topology>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub max_event_bytes: usize,
    pub fault: CancellationToken,
    /// Makes first attempts and settles them, on this session's publisher.
    pub deliverer: Arc<Deliverer>,
    /// The worker's delivery slots, shared with the deliveries consumer.
    pub delivery_slots: Arc<Semaphore>,
}

impl Handler for FanOut {
    async fn handle(self: Arc<Self>, mut delivery: Delivery) {
        // The body moves out so it can go once decoded; the message is kept to settle it.
        let data = std::mem::take(&mut delivery.data);
        let settled = self.process(data).await;
        finish(&delivery, settled, &self.fault).await;
    }
}

impl FanOut {
    async fn process(&self, data: Vec<u8>) -> Result<(), PublishError> {
        self.metrics.events_received.inc();
        if data.len() > self.max_event_bytes {
            let error = format!(
                "event of {} bytes is over limits.max_event_bytes ({})",
                data.len(),
                self.max_event_bytes
            );
            return self.reject(&data, "too_large", &error).await;
        }
        let decoded = match envelope::decode(&data) {
            Ok(decoded) => decoded,
            Err(err) => {
                return self
                    .reject(&data, err.reason(), &format!("invalid event: {err}"))
                    .await;
            }
        };
        // From here on the event and its canonical JSON stand for it: the received
        // bytes are not held through the attempts.
        drop(data);
        let event = decoded.event;
        if decoded.webhooks_disabled {
            debug!(event_id = %event.id, event_type = %event.event_type, "webhooks disabled by the producer");
            return Ok(());
        }
        let snapshot = self.subscriptions.load();
        let matches: Vec<_> = snapshot.matching(&event).cloned().collect();
        drop(snapshot);
        if matches.is_empty() {
            debug!(event_id = %event.id, event_type = %event.event_type, "no subscription matches");
            return Ok(());
        }
        let body = Bytes::from(event.to_json());
        let event = Arc::new(event);
        let publishes = matches.iter().map(|compiled| {
            let sub = &compiled.sub;
            let task = DeliveryTask {
                subscription: sub.name.clone(),
                attempt: 1,
                event: event.clone(),
                body: body.clone(),
            };
            async move {
                if !sub.enabled {
                    return self
                        .deliverer
                        .dead_letter(
                            &task.body,
                            &sub.name,
                            DeadReason::SubscriptionDisabled,
                            None,
                            0,
                        )
                        .await;
                }
                // A subscription at its cap is parked at once: it needs no slot,
                // and handing it to <p>.deliveries would only cost another hop.
                let Some(reserved) = self.deliverer.core.reserve(&sub.name) else {
                    self.deliverer.park(&task).await?;
                    self.count_hand_off("subscription_cap");
                    return Ok(());
                };
                // Never wait for a slot here: a busy worker hands the attempt to
                // <p>.deliveries. Unless the broker blocks publishing (an alarm):
                // then a hand-off could only time out, while waiting still delivers.
                let _slot = match self.delivery_slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    Err(_) if self.publisher.is_blocked() => self
                        .delivery_slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the delivery slots are never closed"),
                    Err(_) => {
                        reserved.release_unused();
                        return self.hand_off(&task).await;
                    }
                };
                let outcome = attempt(&self.deliverer.core, reserved, compiled, &task).await;
                self.deliverer.settle(sub, &task, outcome).await
            }
        });
        try_join_all(publishes).await?;
        debug!(event_id = %event.id, event_type = %event.event_type, tasks = matches.len(), "event fanned out");
        Ok(())
    }

    /// Leaves the first attempt to the deliveries stage (any worker).
    async fn hand_off(&self, task: &DeliveryTask) -> Result<(), PublishError> {
        let headers = DeliveryTask::headers(&task.subscription, task.attempt);
        self.publisher
            .publish("", self.topology.deliveries(), &task.body, headers)
            .await?;
        self.count_hand_off("no_slot");
        Ok(())
    }

    fn count_hand_off(&self, reason: &str) {
        self.metrics
            .fanout_handoffs
            .with_label_values(&[reason])
            .inc();
    }

    async fn reject(&self, body: &[u8], reason: &str, error: &str) -> Result<(), PublishError> {
        reject(&self.publisher, &self.topology, body, error).await?;
        self.metrics
            .events_rejected
            .with_label_values(&[reason])
            .inc();
        warn!(reason, error, "event rejected");
        Ok(())
    }
}
