//! The one delivery path, whoever holds the task: the fan-out with a first
//! attempt, or the `<p>.deliveries` consumer with the rest. A disabled
//! subscription's task is dead-lettered; otherwise `route` picks between an
//! attempt here, a hand-off to `<p>.deliveries` and a park in a delay queue.
//! An attempt's outcome is made durable (a confirmed retry or dead letter)
//! before the message that carried the task may be acked: a follow-up that is
//! not confirmed leaves it unacked, a duplicate and never a loss.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, warn};

use super::{
    attempt::{Attempted, attempt},
    dead::{self, DeadLetter},
    disable::disable,
    outcome::{Failure, Outcome},
    outcomes::{OutcomeEvent, Outcomes},
    route::{Facts, Route, route},
    shared::DeliveryCore,
    task::DeliveryTask,
};
use crate::{
    broker::{
        consumer::{Handler, Message, Settle},
        publisher::{Destination, PublishError, Publisher},
    },
    dead_letter::DeadReason,
    metrics::{DeliveryOutcome, DisabledReason, Handoff},
    subscriptions::{model::Subscription, snapshot::Compiled},
};

/// Who delivers a task, which says how it gets a delivery slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The fan-out, with a first attempt: it takes a slot only if one is free.
    FanOut,
    /// The `<p>.deliveries` consumer: its consume loop took a slot with the message.
    Deliveries,
}

/// Delivers on one broker session's publisher.
pub struct Deliverer {
    core: Arc<DeliveryCore>,
    publisher: Publisher,
    /// Where outcome events go, with `outcomes.enabled`.
    outcomes: Option<Outcomes>,
}

impl Deliverer {
    pub fn new(core: Arc<DeliveryCore>, publisher: Publisher, outcomes: Option<Outcomes>) -> Self {
        Self {
            core,
            publisher,
            outcomes,
        }
    }

    pub fn core(&self) -> &DeliveryCore {
        &self.core
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Takes `task` for `compiled` as far as it goes now: an outcome made
    /// durable, a hand-off or a park, each confirmed by the broker.
    pub async fn deliver(
        &self,
        compiled: &Compiled,
        task: DeliveryTask,
        holder: Holder,
    ) -> Result<(), PublishError> {
        let sub = &compiled.sub;
        if !sub.enabled {
            let reason = DeadReason::SubscriptionDisabled;
            let letter = DeadLetter {
                subscription: Some(&sub.name),
                reason,
                failure: None,
                attempts: task.attempt - 1,
            };
            self.dead_letter(&task.body, &letter).await?;
            self.announce(|| OutcomeEvent::dead_unattempted(&task, reason));
            return Ok(());
        }
        let place = self.core.caps.try_acquire(&sub.name);
        let free = match holder {
            Holder::FanOut => self.core.free_slot(),
            Holder::Deliveries => None,
        };
        let facts = Facts {
            slot_free: holder == Holder::Deliveries || free.is_some(),
            at_cap: place.is_none(),
            publishing_blocked: self.publisher.is_blocked(),
        };
        // Held until the outcome is durable.
        let (place, _slot) = match (route(facts), place) {
            (Route::Attempt, Some(place)) => (place, free),
            (Route::WaitForSlot, Some(place)) => (place, Some(self.core.wait_for_slot().await)),
            (Route::HandOff, Some(place)) => {
                place.release_unused();
                return self.hand_off(&task).await;
            }
            (Route::Park, _) | (_, None) => return self.park(&task, holder).await,
        };
        let attempted = attempt(&self.core, place, compiled, &task).await;
        self.settle(sub, &task, &attempted).await?;
        self.announce(|| OutcomeEvent::of_attempt(&task, &attempted));
        let succeeded = matches!(attempted.outcome, Outcome::Delivered { .. });
        if self.core.failures.record(&sub.name, succeeded).await {
            disable(
                &self.core,
                self.outcomes.as_ref(),
                &sub.name,
                DisabledReason::Failing,
            )
            .await;
        }
        Ok(())
    }

    /// Hands an outcome event over, if they are published; made only then.
    fn announce(&self, event: impl FnOnce() -> OutcomeEvent) {
        if let Some(outcomes) = &self.outcomes {
            outcomes.announce(event());
        }
    }

    /// Leaves the attempt to any worker with a free slot.
    async fn hand_off(&self, task: &DeliveryTask) -> Result<(), PublishError> {
        let to = Destination::Queue(self.core.topology.deliveries());
        self.publisher
            .publish(to, &task.body, task.headers(task.attempt))
            .await?;
        self.count_handoff(Handoff::NoSlot);
        Ok(())
    }

    /// Sets aside a task whose subscription is at its in-flight cap: it waits
    /// in the shortest delay queue that lasts until a place should free up,
    /// holding no slot meanwhile. Its attempt number is unchanged.
    async fn park(&self, task: &DeliveryTask, holder: Holder) -> Result<(), PublishError> {
        let core = &self.core;
        let wait = core.caps.wait_for_place(&task.subscription);
        let delay = core.policy.bucket_for_wait(wait);
        debug!(subscription = %task.subscription, wait_ms = wait.as_millis() as u64, delay_ms = delay.as_millis() as u64, "subscription at its in-flight cap, task parked");
        let queue = core.topology.delay(delay);
        self.publisher
            .publish(
                Destination::Queue(&queue),
                &task.body,
                task.headers(task.attempt),
            )
            .await?;
        if holder == Holder::FanOut {
            self.count_handoff(Handoff::SubscriptionCap);
        }
        Ok(())
    }

    fn count_handoff(&self, reason: Handoff) {
        let handoffs = &self.core.metrics.fanout_handoffs;
        handoffs.with_label_values(&[reason.as_str()]).inc();
    }

    /// Makes an attempt's outcome durable: nothing to do on success, else a
    /// confirmed retry or dead letter.
    async fn settle(
        &self,
        sub: &Subscription,
        task: &DeliveryTask,
        attempted: &Attempted,
    ) -> Result<(), PublishError> {
        let core = &self.core;
        match &attempted.outcome {
            Outcome::Delivered { .. } => {
                core.metrics.delivered(DeliveryOutcome::Success, &sub.name);
                Ok(())
            }
            Outcome::Retry {
                failure,
                not_before,
            } => {
                let delay = core.policy.next_delay(task.attempt, *not_before);
                let queue = core.topology.delay(delay);
                let headers = task.headers(task.attempt + 1);
                self.publisher
                    .publish(Destination::Queue(&queue), &task.body, headers)
                    .await?;
                core.metrics.delivered(DeliveryOutcome::Retry, &sub.name);
                debug!(
                    subscription = %sub.name, event_id = %task.event.id, attempt = task.attempt,
                    status = failure.status, error = %failure.error, delay_ms = delay.as_millis() as u64,
                    "delivery failed, retry scheduled"
                );
                Ok(())
            }
            Outcome::Dead { reason, failure } => {
                if *reason == DeadReason::Gone {
                    // First: once the dead letter is visible, the subscription is already off.
                    let outcomes = self.outcomes.as_ref();
                    disable(core, outcomes, &sub.name, DisabledReason::Gone).await;
                }
                let letter = DeadLetter {
                    subscription: Some(&sub.name),
                    reason: *reason,
                    failure: Some(failure),
                    attempts: task.attempt,
                };
                self.dead_letter(&task.body, &letter).await
            }
        }
    }

    async fn dead_letter(&self, body: &Bytes, letter: &DeadLetter<'_>) -> Result<(), PublishError> {
        dead::publish(&self.publisher, &self.core.topology, body, letter).await?;
        let metrics = &self.core.metrics;
        let subscription = letter.subscription.unwrap_or_default();
        metrics.delivered(DeliveryOutcome::Dead, subscription);
        metrics
            .dead_letters
            .with_label_values(&[letter.reason.as_str()])
            .inc();
        warn!(
            subscription,
            reason = letter.reason.as_str(),
            attempts = letter.attempts,
            status = letter.failure.and_then(|f| f.status),
            error = letter.failure.map(|f| f.error.as_str()),
            "delivery dead-lettered"
        );
        Ok(())
    }

    /// A task from `<p>.deliveries` or a delay queue: read, its subscription
    /// looked up again (current URL, headers, enabled), then delivered.
    async fn take(&self, message: Message) -> Result<(), PublishError> {
        let task = match DeliveryTask::from_message(&message) {
            Ok(task) => task,
            Err(err) => {
                // Nothing can ever deliver it; keep it where a human can look.
                warn!(error = %err, "undecodable delivery task dead-lettered");
                let failure = Failure {
                    status: None,
                    error: err.to_string(),
                };
                let letter = DeadLetter {
                    subscription: None,
                    reason: DeadReason::Poison,
                    failure: Some(&failure),
                    attempts: 0,
                };
                return self.dead_letter(&message.body, &letter).await;
            }
        };
        let compiled = self
            .core
            .subscriptions
            .load()
            .get(&task.subscription)
            .cloned();
        let Some(compiled) = compiled else {
            debug!(subscription = %task.subscription, event_id = %task.event.id, "subscription deleted, delivery skipped");
            let metrics = &self.core.metrics;
            metrics.delivered(DeliveryOutcome::Skipped, &task.subscription);
            return Ok(());
        };
        self.deliver(&compiled, task, Holder::Deliveries).await
    }
}

/// The `<p>.deliveries` consumer.
impl Handler for Deliverer {
    async fn handle(self: Arc<Self>, message: Message) -> Settle {
        Settle::after(self.take(message).await)
    }
}
