//! The worker role: keeps a broker session (publish + consume connections),
//! runs the fan-out and deliver consumers on it, and opens a new session with
//! backoff after any fault (connection loss, channel close, consumer cancel,
//! stream end). On shutdown it stops consuming, lets in-flight work finish
//! within `worker.shutdown_timeout`, and leaves the rest unacked.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    broker::{
        consumer::{ConsumeEnd, consume},
        session::{Session, reconnect_backoff},
    },
    config::Config,
    delivery::worker::{Deliverer, DeliveryCore},
    ingest::fanout::FanOut,
};

pub struct Worker {
    pub config: Arc<Config>,
    pub core: Arc<DeliveryCore>,
    /// True while a session is open and both consumers run.
    pub connected: Arc<AtomicBool>,
}

impl Worker {
    pub async fn run(&self, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        let delivery_slots =
            Arc::new(Semaphore::new(self.config.worker.concurrency.get() as usize));
        // No more events in fan-out than delivery slots: each can then usually make its
        // first attempt itself instead of paying a second broker hop via <p>.deliveries.
        let fanout_slots = Arc::new(Semaphore::new(
            (self.config.worker.concurrency.get() as usize)
                .min(usize::from(self.config.amqp.prefetch)),
        ));

        // Matching against a snapshot that is not loaded yet would drop events.
        while !self.core.subscriptions.is_loaded() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }

        let mut delays = reconnect_backoff();
        loop {
            let opened = tokio::select! {
                () = cancel.cancelled() => break,
                opened = Session::open(&self.config.amqp, Some(&self.core.topology), "worker", true) => opened,
            };
            let session = match opened {
                Ok(session) => session,
                Err(err) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    warn!(
                        error = format!("{err:#}"),
                        delay_ms = delay.as_millis() as u64,
                        "worker cannot reach the broker, retrying"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let end = self
                .serve(&session, &tracker, &delivery_slots, &fanout_slots, &cancel)
                .await;
            self.set_connected(false);
            if cancel.is_cancelled() {
                session.close().await;
                return;
            }
            match end {
                Ok(()) => delays = reconnect_backoff(),
                Err(reason) => warn!(reason, "worker broker session lost, reconnecting"),
            }
            session.close().await;
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Runs both consumers until shutdown or a fault; `Err` says what failed.
    async fn serve(
        &self,
        session: &Session,
        tracker: &TaskTracker,
        delivery_slots: &Arc<Semaphore>,
        fanout_slots: &Arc<Semaphore>,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let prefetch = self.config.amqp.prefetch;
        let started = async {
            let events = session
                .consume(self.core.topology.events(), prefetch)
                .await?;
            let deliveries = session
                .consume(self.core.topology.deliveries(), prefetch)
                .await?;
            Ok::<_, anyhow::Error>((events, deliveries))
        };
        let (mut events, mut deliveries) = started.await.map_err(|e| format!("{e:#}"))?;
        let fault = session.fault().clone();
        let deliverer = Arc::new(Deliverer {
            core: self.core.clone(),
            publisher: session.publisher().clone(),
            fault: fault.clone(),
        });
        let fanout = Arc::new(FanOut {
            subscriptions: self.core.subscriptions.clone(),
            topology: self.core.topology.clone(),
            metrics: self.core.metrics.clone(),
            publisher: session.publisher().clone(),
            max_event_bytes: self.config.limits.max_event_bytes,
            fault: fault.clone(),
            deliverer: deliverer.clone(),
            delivery_slots: delivery_slots.clone(),
        });
        // Stops both loops on shutdown or on any fault of this session.
        let stop = cancel.child_token();
        let stop_on_fault = {
            let (stop, fault) = (stop.clone(), fault.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = fault.cancelled() => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            })
        };
        let depths = crate::broker::depth::watch(
            session,
            &self.core.topology,
            &self.core.metrics,
            self.config.metrics.queue_refresh,
            &stop,
        );
        self.set_connected(true);
        info!(queues = ?[self.core.topology.events(), self.core.topology.deliveries()], "worker consuming");
        let consuming = async {
            let end = tokio::select! {
                end = consume(&mut events, fanout, fanout_slots.clone(), tracker, &stop) => end,
                end = consume(&mut deliveries, deliverer, delivery_slots.clone(), tracker, &stop) => end,
            };
            stop.cancel(); // ends the depth watcher too
            end
        };
        let (end, ()) = tokio::join!(consuming, depths);
        stop_on_fault.abort();
        if cancel.is_cancelled() {
            // The consumers (and so their channels) live until in-flight work is acked.
            self.drain(tracker).await;
        }
        drop((events, deliveries));
        match end {
            ConsumeEnd::Stopped if !fault.is_cancelled() => Ok(()),
            ConsumeEnd::Stopped => Err("a connection of the session failed".into()),
            ConsumeEnd::Ended(reason) => {
                fault.cancel();
                Err(reason)
            }
        }
    }

    /// Waits for in-flight messages up to `worker.shutdown_timeout`; called
    /// while the consumers' channels are still open, so their acks go through.
    async fn drain(&self, tracker: &TaskTracker) {
        tracker.close();
        let timeout = self.config.worker.shutdown_timeout;
        info!(
            in_flight = tracker.len(),
            timeout_ms = timeout.as_millis() as u64,
            "worker draining"
        );
        if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
            warn!(
                in_flight = tracker.len(),
                "shutdown timeout reached; the rest returns to the queue unacked"
            );
        }
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }
}
