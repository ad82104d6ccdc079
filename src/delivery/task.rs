//! A delivery task: one event for one subscription, the body of a
//! `<p>.deliveries` (or delay-queue) message. The body is the event's
//! canonical JSON; the subscription and the attempt number travel in herald's
//! own headers (never `x-death`, which the broker owns).

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    broker::{consumer::Message, headers::Headers},
    event::Event,
};

/// Header naming the subscription a task is for.
pub const SUBSCRIPTION_HEADER: &str = "herald-subscription";
/// Header with the 1-based number of the attempt the task is waiting for.
pub const ATTEMPT_HEADER: &str = "herald-attempt";
/// Header counting the times the task was parked for its attempt (absent: never).
pub const PARKED_HEADER: &str = "herald-parked";

#[derive(Debug)]
pub struct DeliveryTask {
    pub subscription: String,
    pub attempt: u32,
    /// Shared: the fan-out makes one task per subscription from one event.
    pub event: Arc<Event>,
    /// The canonical JSON of `event`, exactly as received: what `json` delivers.
    pub body: Bytes,
    /// Times it was parked waiting for room for this attempt.
    pub parked: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("delivery task without a `{SUBSCRIPTION_HEADER}` header")]
    NoSubscription,
    #[error("delivery task with a body that is not an event: {0}")]
    Body(#[from] serde_json::Error),
}

impl DeliveryTask {
    /// The first attempt of `event` for `subscription`.
    pub fn first(subscription: &str, event: Arc<Event>, body: Bytes) -> Self {
        Self {
            subscription: subscription.to_owned(),
            attempt: 1,
            event,
            body,
            parked: 0,
        }
    }

    /// Reads a task from a message; a missing attempt header means attempt 1.
    pub fn from_message(message: &Message) -> Result<Self, TaskError> {
        let subscription = message
            .header_text(SUBSCRIPTION_HEADER)
            .ok_or(TaskError::NoSubscription)?;
        let attempt = message
            .header_int(ATTEMPT_HEADER)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1);
        let event = Arc::new(Event::from_json(&message.body)?);
        let parked = message.header_int(PARKED_HEADER);
        Ok(Self {
            subscription,
            attempt,
            event,
            body: message.body.clone(),
            parked: parked.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        })
    }

    /// The headers of this task's message when it waits for `attempt`.
    pub fn headers(&self, attempt: u32) -> Headers {
        headers(&self.subscription, attempt)
    }

    /// The headers of this task parked once more for the same attempt.
    pub fn parked_headers(&self) -> Headers {
        let parked = i64::from(self.parked.saturating_add(1));
        self.headers(self.attempt).int(PARKED_HEADER, parked)
    }
}

/// The headers of a task for `subscription` waiting for `attempt`.
pub fn headers(subscription: &str, attempt: u32) -> Headers {
    Headers::new()
        .text(SUBSCRIPTION_HEADER, subscription)
        .int(ATTEMPT_HEADER, i64::from(attempt))
}
