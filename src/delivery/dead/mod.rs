//! Dead letters: a delivery that will not be attempted again is published to
//! `<p>.dead` with headers saying why (`crate::dead_letter`); the worker's
//! `archive` moves everything that reaches `<p>.dead` into the stream
//! `<p>.dead.log`, where `log` lists it and `replay` puts it back into
//! delivery, or purges it, without taking anything off a queue.

pub mod archive;
pub mod log;
pub mod replay;

use bytes::Bytes;
use time::OffsetDateTime;

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
        ATTEMPTS_HEADER, DIED_AT_HEADER, DeadReason, LAST_ERROR_HEADER, LAST_STATUS_HEADER,
        REASON_HEADER, SUBSCRIPTION_HEADER as DEAD_SUBSCRIPTION_HEADER,
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
        .int(DIED_AT_HEADER, now_millis())
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

/// The time now in unix milliseconds, as `x-herald-died-at` says it.
pub fn now_millis() -> i64 {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now).unwrap_or(i64::MAX)
}
