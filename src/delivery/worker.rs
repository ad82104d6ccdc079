//! The DELIVER stage: take a task from `<p>.deliveries`, look its subscription
//! up in the snapshot, render, sign, send, and act on the outcome: ack on 2xx;
//! otherwise confirm a retry (delay queue) or a dead letter first, then ack.
//! A follow-up that is not confirmed leaves the task unacked: a duplicate, never a loss.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    caps::{CapGuard, InFlightCaps},
    dead::{self, DeadLetter},
    http::HttpClient,
    outcome::{DeadReason, Failure, Outcome, classify, classify_render},
    request::signed_request,
    retry::RetryPolicy,
    task::DeliveryTask,
};
use crate::{
    broker::{
        consumer::Handler,
        publisher::{PublishError, Publisher},
        topology::Topology,
    },
    metrics::{DeliveryOutcome, Metrics},
    subscriptions::{
        model::Subscription,
        snapshot::{Compiled, Subscriptions},
        store::Store,
    },
};

/// What every attempt needs and outlives a broker session.
pub struct DeliveryCore {
    pub subscriptions: Arc<Subscriptions>,
    pub store: Store,
    pub http: HttpClient,
    pub topology: Arc<Topology>,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    pub timeout: Duration,
    caps: InFlightCaps,
}

impl DeliveryCore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        subscriptions: Arc<Subscriptions>,
        store: Store,
        http: HttpClient,
        topology: Arc<Topology>,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
        timeout: Duration,
        max_in_flight_per_subscription: usize,
    ) -> Self {
        Self {
            subscriptions,
            store,
            http,
            topology,
            metrics,
            policy,
            timeout,
            caps: InFlightCaps::new(max_in_flight_per_subscription),
        }
    }
}

impl DeliveryCore {
    /// A place in the subscription's in-flight cap, held until dropped.
    pub fn reserve(&self, subscription: &str) -> Option<CapGuard> {
        self.caps.try_acquire(subscription)
    }
}

/// The deliveries consumer of one broker session.
pub struct Deliverer {
    pub core: Arc<DeliveryCore>,
    pub publisher: Publisher,
    /// Tripped when a publish shows the session is broken (e.g. a queue went missing).
    pub fault: CancellationToken,
}

impl Handler for Deliverer {
    async fn handle(self: Arc<Self>, mut delivery: Delivery) {
        // The body moves into the task (no copy); the message is kept to settle it.
        let body = Bytes::from(std::mem::take(&mut delivery.data));
        let settled = self.process(&delivery, body).await;
        finish(&delivery, settled, &self.fault).await;
    }
}

impl Deliverer {
    async fn process(&self, delivery: &Delivery, body: Bytes) -> Result<(), PublishError> {
        let core = &self.core;
        let task = match DeliveryTask::from_message(
            delivery.properties.headers().as_ref(),
            body.clone(),
        ) {
            Ok(task) => task,
            Err(err) => {
                // Nothing can ever deliver it; keep it where a human can look.
                warn!(error = %err, "undecodable delivery task dead-lettered");
                let failure = Failure {
                    status: None,
                    error: err.to_string(),
                };
                return self
                    .dead_letter(&body, "", DeadReason::Poison, Some(&failure), 0)
                    .await;
            }
        };
        let snapshot = core.subscriptions.load();
        let Some(compiled) = snapshot.get(&task.subscription).cloned() else {
            debug!(subscription = %task.subscription, event_id = %task.event.id, "subscription deleted, delivery skipped");
            core.metrics
                .delivered(DeliveryOutcome::Skipped, &task.subscription);
            return Ok(());
        };
        drop(snapshot);
        if !compiled.sub.enabled {
            return self
                .dead_letter(
                    &task.body,
                    &task.subscription,
                    DeadReason::SubscriptionDisabled,
                    None,
                    task.attempt - 1,
                )
                .await;
        }
        let Some(reserved) = core.reserve(&task.subscription) else {
            return self.park(&task).await;
        };
        let outcome = attempt(core, reserved, &compiled, &task).await;
        self.settle(&compiled.sub, &task, outcome).await
    }

    /// Sets aside a task whose subscription is at its in-flight cap: it waits
    /// in the delay queue closest above the time a place should free up
    /// (never below the shortest), holding no worker slot meanwhile. Its
    /// attempt number is unchanged.
    pub async fn park(&self, task: &DeliveryTask) -> Result<(), PublishError> {
        let core = &self.core;
        let wait = core.caps.wait_for_place(&task.subscription);
        // Jitter -1 and retry 1: the smallest bucket at or above `wait`.
        let delay = core.policy.delay(1, -1.0, Some(wait));
        debug!(subscription = %task.subscription, wait_ms = wait.as_millis() as u64, delay_ms = delay.as_millis() as u64, "subscription at its in-flight cap, task parked");
        self.publisher
            .publish(
                "",
                &core.topology.delay(delay),
                &task.body,
                DeliveryTask::headers(&task.subscription, task.attempt),
            )
            .await
    }

    /// Makes the outcome durable: nothing to do on success, else a confirmed retry or dead letter.
    pub async fn settle(
        &self,
        sub: &Subscription,
        task: &DeliveryTask,
        outcome: Outcome,
    ) -> Result<(), PublishError> {
        let core = &self.core;
        match outcome {
            Outcome::Delivered { .. } => {
                core.metrics.delivered(DeliveryOutcome::Success, &sub.name);
                Ok(())
            }
            Outcome::Retry {
                failure,
                not_before,
            } => {
                let delay = core.policy.next_delay(task.attempt, not_before);
                let queue = core.topology.delay(delay);
                self.publisher
                    .publish(
                        "",
                        &queue,
                        &task.body,
                        DeliveryTask::headers(&sub.name, task.attempt + 1),
                    )
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
                if reason == DeadReason::Gone {
                    // First: once the dead letter is visible, the subscription is already off.
                    disable(&core.store, &sub.name).await;
                }
                self.dead_letter(&task.body, &sub.name, reason, Some(&failure), task.attempt)
                    .await
            }
        }
    }

    pub async fn dead_letter(
        &self,
        body: &Bytes,
        subscription: &str,
        reason: DeadReason,
        failure: Option<&Failure>,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let letter = DeadLetter {
            subscription,
            reason,
            failure,
            attempts,
        };
        dead::publish(&self.publisher, &self.core.topology, body, letter).await?;
        let metrics = &self.core.metrics;
        metrics.delivered(DeliveryOutcome::Dead, subscription);
        metrics
            .dead_letters
            .with_label_values(&[reason.as_str()])
            .inc();
        warn!(
            subscription,
            reason = reason.as_str(),
            attempts,
            status = failure.and_then(|f| f.status),
            error = failure.map(|f| f.error.as_str()),
            "delivery dead-lettered"
        );
        Ok(())
    }
}

/// One HTTP attempt under a place `reserved` in the subscription's cap,
/// signed with this attempt's timestamp, measured and classified. The place
/// is freed when it ends and learns whether the attempt failed.
pub async fn attempt(
    core: &DeliveryCore,
    mut reserved: CapGuard,
    compiled: &Compiled,
    task: &DeliveryTask,
) -> Outcome {
    let outcome = attempt_once(core, compiled, task).await;
    if !matches!(outcome, Outcome::Delivered { .. }) {
        reserved.failed();
    }
    outcome
}

async fn attempt_once(core: &DeliveryCore, compiled: &Compiled, task: &DeliveryTask) -> Outcome {
    let sub = &compiled.sub;
    let max_attempts = sub.max_attempts.unwrap_or(core.policy.max_attempts);
    let request = match signed_request(sub, compiled.templates(), task, core.timeout) {
        Ok(request) => request,
        Err(err) => {
            let outcome = classify_render(&err, task.attempt, max_attempts);
            // The name of a missing credential, never a value, is in `err`.
            info!(subscription = %sub.name, event_id = %task.event.id, attempt = task.attempt, error = %err, "attempt not sent");
            return outcome;
        }
    };

    let metrics = &core.metrics;
    metrics.deliveries_in_flight.inc();
    let started = Instant::now();
    let result = core.http.send(request).await;
    let elapsed = started.elapsed();
    metrics.deliveries_in_flight.dec();

    let outcome = classify(&result, task.attempt, max_attempts);
    metrics
        .attempt_duration
        .with_label_values(&[outcome.label()])
        .observe(elapsed.as_secs_f64());
    if let Outcome::Delivered { .. } = outcome {
        let latency = (OffsetDateTime::now_utc() - task.event.time).as_seconds_f64();
        metrics.delivery_latency.observe(latency.max(0.0));
    }
    let status = match &result {
        Ok(r) => Some(r.status),
        Err(_) => None,
    };
    // One line per attempt: DEBUG when it worked (per event), INFO when it will be retried.
    // Dead letters get their WARN line where they are published.
    let error = result.as_ref().err().map(ToString::to_string);
    let duration_ms = elapsed.as_millis() as u64;
    macro_rules! attempt_line {
        ($level:ident) => {
            $level!(
                event_id = %task.event.id, event_type = %task.event.event_type, subscription = %sub.name,
                attempt = task.attempt, outcome = outcome.label(), status, duration_ms, error,
                "delivery attempt"
            )
        };
    }
    match outcome {
        Outcome::Delivered { .. } => attempt_line!(debug),
        _ => attempt_line!(info),
    }
    outcome
}

/// After a 410 the endpoint said it is gone for good: stop sending to it.
async fn disable(store: &Store, name: &str) {
    let result = store
        .update(name, |s| {
            let change = s.enabled;
            s.enabled = false;
            Ok::<_, std::convert::Infallible>(change)
        })
        .await;
    match result {
        Ok(_) => info!(subscription = name, "subscription disabled after 410 Gone"),
        Err(err) => {
            warn!(subscription = name, error = %err, "could not disable a subscription after 410 Gone")
        }
    }
}

/// Acks when the outcome is durable; otherwise returns the message to its queue.
pub async fn finish(
    delivery: &Delivery,
    settled: Result<(), PublishError>,
    fault: &CancellationToken,
) {
    match settled {
        Ok(()) => {
            if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                // The channel is gone; the broker redelivers the message: a duplicate.
                debug!(error = %err, "ack failed");
            }
        }
        Err(err) => {
            warn!(error = %err, "follow-up not confirmed, message returned to its queue");
            if err.needs_new_session() {
                fault.cancel();
            }
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(err) = delivery.nack(requeue).await {
                debug!(error = %err, "nack failed");
            }
        }
    }
}
