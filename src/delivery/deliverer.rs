//! The one delivery path, whoever holds the task: the fan-out with a first
//! attempt, or the `<p>.deliveries` consumer with the rest. A disabled
//! subscription's task is dead-lettered; otherwise `route` picks between an
//! attempt here, a hand-off to `<p>.deliveries` and a park in a delay queue.
//! An attempt's outcome is made durable (a confirmed retry or dead letter)
//! before the message that carried the task may be acked: a follow-up that is
//! not confirmed leaves it unacked, a duplicate and never a loss.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::{
    admission::{Admission, admit, admit_when_free},
    attempt::{Attempted, attempt},
    caps::CapGuard,
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
    metrics::{DeliveryOutcome, DisabledReason, Handoff, Parked},
    subscriptions::{model::Subscription, snapshot::Compiled},
};

/// Who delivers a task, which says how it gets a delivery slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The fan-out, with a first attempt: it waits for a slot, unless the
    /// event is `wide` (more matches than the worker has slots).
    FanOut { wide: bool },
    /// The `<p>.deliveries` consumer, which may wait here for a slot or a place.
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
            return self.dead_letter_unattempted(&task).await;
        }
        let Some((place, _slot)) = self.make_room(sub, &task, holder).await? else {
            return Ok(());
        };
        // The slot is held until the outcome is durable.
        let attempted = attempt(&self.core, place, compiled, &task).await;
        self.settle(sub, &task, &attempted).await?;
        self.announce(|| OutcomeEvent::of_attempt(&task, &attempted));
        let succeeded = matches!(attempted.outcome, Outcome::Delivered { .. });
        if self.core.failures.record(&sub.name, succeeded).await {
            let outcomes = self.outcomes.as_ref();
            disable(&self.core, outcomes, &sub.name, DisabledReason::Failing).await;
        }
        Ok(())
    }

    /// A place under the subscription's cap and a delivery slot for an attempt
    /// here, or `None` once the task has been handed off or parked instead.
    async fn make_room(
        &self,
        sub: &Subscription,
        task: &DeliveryTask,
        holder: Holder,
    ) -> Result<Option<(CapGuard, Option<OwnedSemaphorePermit>)>, PublishError> {
        let core = &self.core;
        let mut free = core.free_slot();
        let (admission, route) = loop {
            let admission = admit(core, sub);
            let route = route(Facts {
                slot_free: free.is_some(),
                room: admission.room(),
                publishing_blocked: self.publisher.is_blocked(),
                may_wait: holder == Holder::Deliveries,
                wide: holder == Holder::FanOut { wide: true },
                parked_before: task.parked > 0,
            });
            if route != Route::WaitForSlot || free.is_some() {
                break (admission, route);
            }
            // Wait holding no place, then ask again: a place held through the wait
            // would count as the endpoint's time and make a healthy one look slow.
            admission.give_back(core, sub);
            free = Some(core.wait_for_slot().await);
        };
        // Only an attempt needs a slot. A park or a hand-off waits for a
        // confirm, and a wait for a place can be long: holding a slot through
        // either took it from healthy subscriptions' attempts.
        let free = free.filter(|_| matches!(route, Route::Attempt | Route::WaitForSlot));
        let admission = match route {
            Route::WaitForPlace => admit_when_free(core, sub).await,
            _ => admission,
        };
        match (route, admission) {
            // Past the loop a wait for a slot has its slot: it is an attempt.
            (Route::Attempt | Route::WaitForSlot, Admission::Place(place)) => {
                Ok(Some((place, free)))
            }
            (Route::WaitForPlace, Admission::Place(place)) => {
                let slot = match free {
                    Some(slot) => slot,
                    None => core.wait_for_slot().await,
                };
                Ok(Some((place, Some(slot))))
            }
            (Route::HandOff, admission) => {
                let why = match admission {
                    Admission::AtCap { .. } => Handoff::SubscriptionCap,
                    _ => Handoff::NoSlot,
                };
                admission.give_back(core, sub);
                self.hand_off(task, why).await.map(|()| None)
            }
            (_, Admission::Held { wait, why }) => {
                self.park(task, holder, why, wait).await.map(|()| None)
            }
            (_, admission) => {
                admission.give_back(core, sub);
                let wait = core.caps.park_for(&sub.name);
                let why = Parked::SubscriptionCap;
                self.park(task, holder, why, wait).await.map(|()| None)
            }
        }
    }

    /// A disabled subscription's task goes straight to the dead letters.
    async fn dead_letter_unattempted(&self, task: &DeliveryTask) -> Result<(), PublishError> {
        let reason = DeadReason::SubscriptionDisabled;
        let letter = DeadLetter {
            subscription: Some(&task.subscription),
            reason,
            failure: None,
            attempts: task.attempt - 1,
        };
        self.dead_letter(&task.body, &letter).await?;
        self.announce(|| OutcomeEvent::dead_unattempted(task, reason));
        Ok(())
    }

    /// Hands an outcome event over, if they are published; made only then.
    fn announce(&self, event: impl FnOnce() -> OutcomeEvent) {
        if let Some(outcomes) = &self.outcomes {
            outcomes.announce(event());
        }
    }

    /// Leaves the attempt to the `<p>.deliveries` consumers, which may wait
    /// for a slot or a place.
    async fn hand_off(&self, task: &DeliveryTask, why: Handoff) -> Result<(), PublishError> {
        let to = Destination::Queue(self.core.topology.deliveries());
        self.publisher
            .publish(to, &task.body, task.headers(task.attempt))
            .await?;
        self.count_handoff(why);
        Ok(())
    }

    /// Sets aside a task whose subscription has no room: it waits in the
    /// shortest delay queue that lasts `wait` (until room should be there),
    /// holding no slot meanwhile. Its attempt number is unchanged.
    async fn park(
        &self,
        task: &DeliveryTask,
        holder: Holder,
        why: Parked,
        wait: Duration,
    ) -> Result<(), PublishError> {
        let core = &self.core;
        let delay = core.policy.bucket_for_wait(wait);
        let queue = core.topology.delay(delay);
        self.publisher
            .publish(
                Destination::Queue(&queue),
                &task.body,
                task.parked_headers(),
            )
            .await?;
        debug!(subscription = %task.subscription, reason = why.as_str(), wait_ms = wait.as_millis() as u64, delay_ms = delay.as_millis() as u64, "task parked");
        let again = if task.parked > 0 { "true" } else { "false" };
        let parked = &core.metrics.parked;
        parked.with_label_values(&[why.as_str(), again]).inc();
        if matches!(holder, Holder::FanOut { .. }) && why == Parked::SubscriptionCap {
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
                if let Some(wait) = not_before {
                    // A Retry-After is about the endpoint, not this one message.
                    core.caps
                        .pause(&sub.name, (*wait).min(core.policy.max_delay));
                }
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
