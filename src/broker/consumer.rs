//! The consume loop every stage shares, and the only place messages are
//! settled. Each message is handled on the tracker under a permit from a
//! semaphore (bounded concurrency on top of the prefetch); its handler says
//! what should become of it, and the loop has it acked or requeued (`acks`:
//! runs of acks go to the broker as one). The loop ends
//! explicitly, tripping the session's fault token, when the stream ends or
//! errors, and when the session failed elsewhere, so the worker reconnects
//! instead of sitting idle.

use std::{borrow::Cow, future::Future, sync::Arc};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::{Acker, BasicProperties, message::Delivery};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use super::{
    acks::Acks,
    headers::{self, Headers},
    publisher::PublishError,
};

/// One message taken from a queue: its body and the headers it came with.
pub struct Message {
    pub body: Bytes,
    properties: BasicProperties,
}

impl Message {
    /// The message and what settles it; the body moves, no copy.
    pub(super) fn from_delivery(delivery: Delivery) -> (Self, Acker) {
        let Delivery {
            data,
            properties,
            acker,
            ..
        } = delivery;
        let message = Self {
            body: Bytes::from(data),
            properties,
        };
        (message, acker)
    }

    /// Every header it came with, for a copy of the message (values capped).
    pub fn headers(&self) -> Headers {
        Headers::copied(self.properties.headers().as_ref())
    }

    /// A header as text, whichever string or integer type the producer used.
    pub fn header_text(&self, name: &str) -> Option<String> {
        headers::read_text(self.properties.headers().as_ref(), name)
    }

    /// A header as an integer, from any integer type or a decimal string.
    pub fn header_int(&self, name: &str) -> Option<i64> {
        headers::read_int(self.properties.headers().as_ref(), name)
    }

    /// Every header that reads as text, for bindings that carry attributes in
    /// headers (CloudEvents' binary mode).
    pub fn text_headers(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        headers::text_headers(self.properties.headers().as_ref())
    }

    /// The `content_type` property.
    pub fn content_type(&self) -> Option<&str> {
        self.properties
            .content_type()
            .as_ref()
            .map(|ct| ct.as_str())
    }
}

/// What should become of a message once its handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Everything it caused is confirmed by the broker.
    Ack,
    /// Back to its queue to be taken again: a duplicate, never a loss. (When
    /// the failure showed the session broken, the publisher has ended it.)
    Requeue,
}

impl Settle {
    /// Ack once the follow-ups a message caused are published; otherwise requeue it.
    pub fn after(published: Result<(), PublishError>) -> Self {
        match published {
            Ok(()) => Self::Ack,
            Err(err) => {
                warn!(error = %err, "follow-up not confirmed, message returned to its queue");
                Self::Requeue
            }
        }
    }
}

/// What a stage does with one message.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, message: Message) -> impl Future<Output = Settle> + Send;
}

/// Why a consume loop returned.
#[derive(Debug)]
pub enum ConsumeEnd {
    /// `stop` was cancelled.
    Stopped,
    /// The broker cancelled the consumer, closed the channel, or a connection
    /// of the session failed; the session's fault token is tripped.
    Ended(String),
}

/// A consumer on a channel of its own. Dropping it closes the channel, which
/// returns every unacked message to its queue: its owner keeps it until
/// in-flight work is settled.
pub struct Consumer {
    inner: lapin::Consumer,
    fault: CancellationToken,
    prefetch: u16,
}

impl Consumer {
    pub(super) fn new(inner: lapin::Consumer, fault: CancellationToken, prefetch: u16) -> Self {
        Self {
            inner,
            fault,
            prefetch,
        }
    }

    /// Hands each message to `handler` on `tracker`, at most as many at once as
    /// `slots` has permits, until `stop`, a session fault, or the end of the
    /// stream. Call it once per consumer: its acks coalesce over what it took,
    /// and a second run's `multiple` ack could settle the first's messages.
    pub async fn run<H: Handler>(
        &mut self,
        handler: Arc<H>,
        slots: Arc<Semaphore>,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) -> ConsumeEnd {
        // A quarter of the prefetch may wait, done, behind a slow delivery.
        let acks = Acks::start(tracker, usize::from(self.prefetch / 4));
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return ConsumeEnd::Stopped,
                () = self.fault.cancelled() => return ConsumeEnd::Ended("a connection of the session failed".into()),
                next = self.inner.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => return self.end(format!("consumer failed: {err}")),
                None => return self.end(format!("consumer of {} ended", self.inner.queue())),
            };
            let tag = delivery.delivery_tag;
            let (message, acker) = Message::from_delivery(delivery);
            acks.taken(tag, acker);
            // The permit is taken after the message arrives: an idle consumer holds
            // no slot another stage could use; prefetch bounds what waits here.
            let permit = tokio::select! {
                () = stop.cancelled() => {
                    acks.settled(tag, Settle::Requeue);
                    return ConsumeEnd::Stopped;
                }
                permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
            };
            let (handler, acks) = (handler.clone(), acks.clone());
            tracker.spawn(async move {
                let settle = handler.handle(message).await;
                acks.settled(tag, settle);
                drop(permit);
            });
        }
    }

    fn end(&self, reason: String) -> ConsumeEnd {
        self.fault.cancel();
        ConsumeEnd::Ended(reason)
    }
}
