//! The FAN-OUT stage: an event from `<p>.events` is decoded (invalid ->
//! `<p>.rejected`), matched against the snapshot, and turned into one task per
//! matching enabled subscription on `<p>.deliveries` (a disabled one's task is
//! dead-lettered as `subscription_disabled`). The event is acked only after
//! every one of those publishes is confirmed.

use std::sync::Arc;

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
        dead::{self, DeadLetter},
        outcome::DeadReason,
        task::DeliveryTask,
        worker::finish,
    },
    metrics::{DeliveryOutcome, Metrics},
    subscriptions::snapshot::Subscriptions,
};

pub struct FanOut {
    pub subscriptions: Arc<Subscriptions>,
    pub topology: Arc<Topology>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub max_event_bytes: usize,
    pub fault: CancellationToken,
}

impl Handler for FanOut {
    async fn handle(self: Arc<Self>, delivery: Delivery) {
        let settled = self.process(&delivery).await;
        finish(&delivery, settled, &self.fault).await;
    }
}

impl FanOut {
    async fn process(&self, delivery: &Delivery) -> Result<(), PublishError> {
        self.metrics.events_received.inc();
        let data = &delivery.data;
        if data.len() > self.max_event_bytes {
            let error = format!(
                "event of {} bytes is over limits.max_event_bytes ({})",
                data.len(),
                self.max_event_bytes
            );
            return self.reject(data, "too_large", &error).await;
        }
        let decoded = match envelope::decode(data) {
            Ok(decoded) => decoded,
            Err(err) => {
                return self
                    .reject(data, err.reason(), &format!("invalid event: {err}"))
                    .await;
            }
        };
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
        let publishes = matches.iter().map(|compiled| {
            let sub = &compiled.sub;
            let body = &body;
            async move {
                if sub.enabled {
                    self.publisher
                        .publish(
                            "",
                            self.topology.deliveries(),
                            body,
                            DeliveryTask::headers(&sub.name, 1),
                        )
                        .await
                } else {
                    let letter = DeadLetter {
                        subscription: &sub.name,
                        reason: DeadReason::SubscriptionDisabled,
                        failure: None,
                        attempts: 0,
                    };
                    dead::publish(&self.publisher, &self.topology, body, letter).await?;
                    self.metrics.delivered(DeliveryOutcome::Dead, &sub.name);
                    self.metrics
                        .dead_letters
                        .with_label_values(&[DeadReason::SubscriptionDisabled.as_str()])
                        .inc();
                    Ok(())
                }
            }
        });
        try_join_all(publishes).await?;
        debug!(event_id = %event.id, event_type = %event.event_type, tasks = matches.len(), "event fanned out");
        Ok(())
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
