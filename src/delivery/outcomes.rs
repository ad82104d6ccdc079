//! Outcome events (`outcomes.enabled`): one message per attempt outcome to the
//! topic exchange `<p>.outcomes` (`delivery.succeeded`, `delivery.retrying`,
//! `delivery.dead`) and one when a subscription is disabled
//! (`subscription.disabled`), for upstream systems that want to know what
//! happened without polling. Best effort and at most once: the deliverer hands
//! an event to a bounded queue without waiting, and a task publishes from it;
//! when the queue is full or the broker cannot take them, events are dropped,
//! counted and logged, and no delivery is ever blocked, slowed or failed.

use std::sync::Arc;

use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{attempt::Attempted, outcome::Outcome, task::DeliveryTask};
use crate::{
    broker::{notifier::Notifier, session::Session},
    dead_letter::DeadReason,
    metrics::{DisabledReason, Metrics, OutcomeResult},
};

/// Events waiting to be published, per worker.
const QUEUE: usize = 4096;
/// Bytes of the endpoint's answer an event carries.
const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// One outcome, as published.
#[derive(Debug, Serialize)]
pub struct OutcomeEvent {
    /// `succeeded`, `retrying`, `dead` or `disabled`: the routing key says it too.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub subscription: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Why it is dead, or why the subscription was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub time: String,
}

impl OutcomeEvent {
    fn new(outcome: &'static str, subscription: &str, reason: Option<&'static str>) -> Self {
        Self {
            outcome,
            event_id: None,
            event_type: None,
            subscription: subscription.to_owned(),
            attempt: None,
            status: None,
            duration_ms: None,
            error: None,
            response_body: None,
            reason,
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
        }
    }

    /// What an attempt came to, once it is durable.
    pub fn of_attempt(task: &DeliveryTask, attempted: &Attempted) -> Self {
        let (outcome, status, error, reason) = match &attempted.outcome {
            Outcome::Delivered { status } => ("succeeded", Some(*status), None, None),
            Outcome::Retry { failure, .. } => {
                ("retrying", failure.status, Some(&failure.error), None)
            }
            Outcome::Dead { reason, failure } => (
                "dead",
                failure.status,
                Some(&failure.error),
                Some(reason.as_str()),
            ),
        };
        Self {
            event_id: Some(task.event.id.clone()),
            event_type: Some(task.event.event_type.clone()),
            attempt: Some(task.attempt),
            status,
            duration_ms: Some(attempted.duration.as_secs_f64() * 1000.0),
            error: error.cloned(),
            response_body: excerpt(&attempted.response_body),
            ..Self::new(outcome, &task.subscription, reason)
        }
    }

    /// A task dead-lettered without an attempt (its subscription disabled).
    pub fn dead_unattempted(task: &DeliveryTask, reason: DeadReason) -> Self {
        Self {
            event_id: Some(task.event.id.clone()),
            event_type: Some(task.event.event_type.clone()),
            ..Self::new("dead", &task.subscription, Some(reason.as_str()))
        }
    }

    /// A subscription herald disabled.
    pub fn disabled(subscription: &str, reason: DisabledReason) -> Self {
        Self::new("disabled", subscription, Some(reason.as_str()))
    }

    fn routing_key(&self) -> &'static str {
        match self.outcome {
            "succeeded" => "delivery.succeeded",
            "retrying" => "delivery.retrying",
            "dead" => "delivery.dead",
            _ => "subscription.disabled",
        }
    }
}

/// The start of a response body as text, for an event.
fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(RESPONSE_EXCERPT_BYTES)];
    Some(String::from_utf8_lossy(cut).into_owned())
}

/// Where the deliverer hands its events: never waits.
#[derive(Clone)]
pub struct Outcomes {
    queue: mpsc::Sender<OutcomeEvent>,
    metrics: Arc<Metrics>,
}

impl Outcomes {
    /// Starts publishing to `exchange` on `session` until `stop`.
    pub fn start(
        session: Arc<Session>,
        exchange: String,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(publish(
            Notifier::new(session),
            exchange,
            events,
            metrics.clone(),
            stop,
        ));
        Self { queue, metrics }
    }

    pub fn announce(&self, event: OutcomeEvent) {
        if let Err(err) = self.queue.try_send(event) {
            self.metrics.outcome(OutcomeResult::Dropped);
            if let TrySendError::Closed(_) = err {
                warn!("outcome publisher stopped; outcome event dropped");
            }
        }
    }
}

async fn publish(
    mut notifier: Notifier,
    exchange: String,
    mut events: mpsc::Receiver<OutcomeEvent>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let body = serde_json::to_vec(&event).expect("an outcome event always serialises");
        match notifier.send(&exchange, event.routing_key(), &body).await {
            Ok(()) => {
                failing = false;
                metrics.outcome(OutcomeResult::Published);
            }
            Err(err) => {
                metrics.outcome(OutcomeResult::Failed);
                // One line per failing stretch, not per event.
                if !std::mem::replace(&mut failing, true) {
                    warn!(
                        exchange,
                        error = format!("{err:#}"),
                        "outcome events cannot be published; counting the ones lost"
                    );
                }
            }
        }
    }
}
