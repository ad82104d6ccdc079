//! One attempt at a task: the signed request built, sent under a place in the
//! subscription's cap, timed, classified, counted and logged. Nothing here
//! publishes; the deliverer makes the outcome durable.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tracing::{debug, info};

use super::{
    caps::CapGuard,
    http::{HttpError, Response},
    outcome::{Outcome, classify, classify_render},
    request::signed_request,
    shared::DeliveryCore,
    task::DeliveryTask,
};
use crate::subscriptions::snapshot::Compiled;

/// What an attempt came to, and what it saw on the way.
pub struct Attempted {
    pub outcome: Outcome,
    /// How long the request took; zero when none was sent.
    pub duration: Duration,
    /// The endpoint's answer, up to `delivery.max_response_bytes`.
    pub response_body: Vec<u8>,
}

/// Makes the attempt under `place`, which is given back when it ends and
/// learns whether the attempt failed.
pub async fn attempt(
    core: &DeliveryCore,
    mut place: CapGuard,
    compiled: &Compiled,
    task: &DeliveryTask,
) -> Attempted {
    let attempted = send(core, compiled, task).await;
    if !matches!(attempted.outcome, Outcome::Delivered { .. }) {
        place.failed();
    }
    attempted
}

async fn send(core: &DeliveryCore, compiled: &Compiled, task: &DeliveryTask) -> Attempted {
    let sub = &compiled.sub;
    let max_attempts = sub.max_attempts.unwrap_or(core.policy.max_attempts);
    let request = match signed_request(sub, compiled.templates(), task, core.timeout) {
        Ok(request) => request,
        Err(err) => {
            // The name of a missing credential, never a value, is in `err`.
            info!(subscription = %sub.name, event_id = %task.event.id, attempt = task.attempt, error = %err, "attempt not sent");
            return Attempted {
                outcome: classify_render(&err, task.attempt, max_attempts),
                duration: Duration::ZERO,
                response_body: Vec::new(),
            };
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
    log(
        task,
        &sub.name,
        &outcome,
        &result,
        elapsed.as_millis() as u64,
    );
    Attempted {
        outcome,
        duration: elapsed,
        response_body: result.map(|r| r.body).unwrap_or_default(),
    }
}

/// One line per attempt: DEBUG when it worked (per event), INFO when it will be
/// retried. Dead letters get their WARN line where they are published.
fn log(
    task: &DeliveryTask,
    subscription: &str,
    outcome: &Outcome,
    result: &Result<Response, HttpError>,
    duration_ms: u64,
) {
    let status = result.as_ref().ok().map(|r| r.status);
    let error = result.as_ref().err().map(ToString::to_string);
    macro_rules! attempt_line {
        ($level:ident) => {
            $level!(
                event_id = %task.event.id, event_type = %task.event.event_type, subscription,
                attempt = task.attempt, outcome = outcome.label(), status, duration_ms, error,
                "delivery attempt"
            )
        };
    }
    match outcome {
        Outcome::Delivered { .. } => attempt_line!(debug),
        _ => attempt_line!(info),
    }
}
