//! Dead letters: a delivery that will not be attempted again, moved to
//! `<p>.dead` with headers saying why (`crate::dead_letter`), so it can be
//! listed and replayed.

use bytes::Bytes;

use super::{
    outcome::Failure,
    task::{ATTEMPT_HEADER, SUBSCRIPTION_HEADER},
};
use crate::{
    broker::{
        headers::Headers,
        publisher::{Destination, PublishError, Publisher},
        topology::Topology,
    },
    dead_letter::{
        ATTEMPTS_HEADER, DeadReason, LAST_ERROR_HEADER, LAST_STATUS_HEADER, REASON_HEADER,
        SUBSCRIPTION_HEADER as DEAD_SUBSCRIPTION_HEADER,
    },
};

/// What ended a delivery.
pub struct DeadLetter<'a> {
    /// `None` when the task could not even be read.
    pub subscription: Option<&'a str>,
    pub reason: DeadReason,
    /// What went wrong last; `None` when no attempt was made (a disabled subscription).
    pub failure: Option<&'a Failure>,
    /// Attempts made, 0 when none was.
    pub attempts: u32,
}

/// Publishes `body` (the event's canonical JSON) to `<p>.dead` and waits for the confirm.
pub async fn publish(
    publisher: &Publisher,
    topology: &Topology,
    body: &Bytes,
    letter: &DeadLetter<'_>,
) -> Result<(), PublishError> {
    let mut headers = Headers::new()
        .text(REASON_HEADER, letter.reason.as_str())
        .int(ATTEMPTS_HEADER, i64::from(letter.attempts))
        // Kept so a replay is an ordinary task for the same attempt number.
        .int(ATTEMPT_HEADER, i64::from(letter.attempts.max(1)));
    if let Some(subscription) = letter.subscription {
        headers = headers
            .text(DEAD_SUBSCRIPTION_HEADER, subscription)
            // Kept so a replay is an ordinary task for the same subscription.
            .text(SUBSCRIPTION_HEADER, subscription);
    }
    if let Some(failure) = letter.failure {
        headers = headers.text(LAST_ERROR_HEADER, &failure.error);
        if let Some(status) = failure.status {
            headers = headers.int(LAST_STATUS_HEADER, i64::from(status));
        }
    }
    publisher
        .publish(Destination::Queue(topology.dead()), body, headers)
        .await
}
