//! The consume loop every stage shares: a permit from a semaphore for each
//! message (bounded concurrency on top of the prefetch), each message handled
//! on the tracker, and an explicit end when the stream ends or errors, so the
//! supervisor reconnects instead of sitting idle.

use std::{future::Future, sync::Arc};

use futures_util::StreamExt;
use lapin::{Consumer, message::Delivery};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// What a stage does with one message; it must ack, nack or leave it for redelivery.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, delivery: Delivery) -> impl Future<Output = ()> + Send;
}

/// Why a consume loop returned.
#[derive(Debug)]
pub enum ConsumeEnd {
    /// `stop` was cancelled: shutdown or a fault elsewhere in the session.
    Stopped,
    /// The broker cancelled the consumer, closed the channel, or the connection failed.
    Ended(String),
}

/// Borrows `consumer`: dropping it closes its channel, which returns every
/// unacked message, so the owner keeps it alive until in-flight work is done.
pub async fn consume<H: Handler>(
    consumer: &mut Consumer,
    handler: Arc<H>,
    slots: Arc<Semaphore>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> ConsumeEnd {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return ConsumeEnd::Stopped,
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                // The permit is taken after the message arrives: an idle consumer holds
                // no slot another stage could use; prefetch bounds what waits here.
                let permit = tokio::select! {
                    () = stop.cancelled() => return ConsumeEnd::Stopped,
                    permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
                };
                let handler = handler.clone();
                tracker.spawn(async move {
                    handler.handle(delivery).await;
                    drop(permit);
                });
            }
            Some(Err(err)) => return ConsumeEnd::Ended(format!("consumer failed: {err}")),
            None => return ConsumeEnd::Ended(format!("consumer of {} ended", consumer.queue())),
        }
    }
}
