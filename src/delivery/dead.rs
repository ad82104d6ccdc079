//! Dead letters: a delivery that will not be attempted again, moved to
//! `<p>.dead` with headers saying why, so it can be listed and replayed.

use bytes::Bytes;

use super::{
    outcome::{DeadReason, Failure},
    task::{ATTEMPT_HEADER, SUBSCRIPTION_HEADER},
};
use crate::broker::{
    publisher::{Headers, PublishError, Publisher},
    topology::Topology,
};

pub const REASON_HEADER: &str = "x-herald-reason";
pub const LAST_STATUS_HEADER: &str = "x-herald-last-status";
pub const LAST_ERROR_HEADER: &str = "x-herald-last-error";
pub const ATTEMPTS_HEADER: &str = "x-herald-attempts";
pub const DEAD_SUBSCRIPTION_HEADER: &str = "x-herald-subscription";

/// What ended a delivery, and after how many attempts (0: none was made).
pub struct DeadLetter<'a> {
    pub subscription: &'a str,
    pub reason: DeadReason,
    pub failure: Option<&'a Failure>,
    pub attempts: u32,
}

/// Publishes `body` (the event's canonical JSON) to `<p>.dead` and waits for the confirm.
pub async fn publish(
    publisher: &Publisher,
    topology: &Topology,
    body: &Bytes,
    letter: DeadLetter<'_>,
) -> Result<(), PublishError> {
    let mut headers = Headers::new()
        .text(REASON_HEADER, letter.reason.as_str())
        .int(ATTEMPTS_HEADER, i64::from(letter.attempts))
        .text(DEAD_SUBSCRIPTION_HEADER, letter.subscription)
        // Kept so a replay is an ordinary task for the same subscription.
        .text(SUBSCRIPTION_HEADER, letter.subscription)
        .int(ATTEMPT_HEADER, i64::from(letter.attempts.max(1)));
    if let Some(failure) = letter.failure {
        headers = headers.text(LAST_ERROR_HEADER, &failure.error);
        if let Some(status) = failure.status {
            headers = headers.int(LAST_STATUS_HEADER, i64::from(status));
        }
    }
    publisher
        .publish("", topology.dead(), body, headers.build())
        .await
}
