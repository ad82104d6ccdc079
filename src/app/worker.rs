//! The worker role: keeps a broker session (publish + consume connections),
//! runs the fan-out, deliveries and dead-letter archive consumers on it, and
//! opens a new session after any fault (connection loss, channel close,
//! consumer cancel, stream end). On shutdown it stops consuming, lets
//! in-flight work finish within `worker.shutdown_timeout`, and leaves the rest
//! unacked.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    broker::{
        connectivity::SessionUp,
        consumer::ConsumeEnd,
        depth,
        reconnect::keep_session,
        session::{Session, SessionSpec},
    },
    config::Config,
    delivery::{
        dead::archive::Archive, deliverer::Deliverer, outcomes::Outcomes, shared::DeliveryCore,
    },
    ingest::fanout::FanOut,
};

/// Dead letters being moved into the log at once.
const ARCHIVING: u16 = 16;

pub struct WorkerRole {
    config: Arc<Config>,
    core: Arc<DeliveryCore>,
    /// Up while a session is open and both consumers run.
    up: SessionUp,
    /// Every message being handled, across sessions: what a shutdown waits for.
    tracker: TaskTracker,
    /// Events in fan-out at once.
    fanout_slots: Arc<Semaphore>,
}

impl WorkerRole {
    pub fn new(config: Arc<Config>, core: Arc<DeliveryCore>, up: SessionUp) -> Self {
        // No more events in fan-out than delivery slots: each can then usually make its
        // first attempt itself instead of paying a second broker hop via <p>.deliveries.
        let fanout =
            (config.worker.concurrency.get() as usize).min(usize::from(config.amqp.prefetch));
        Self {
            config,
            core,
            up,
            tracker: TaskTracker::new(),
            fanout_slots: Arc::new(Semaphore::new(fanout)),
        }
    }

    pub async fn run(&self, cancel: CancellationToken) {
        // Matching against a snapshot that is not loaded yet would drop events.
        while !self.core.subscriptions.is_loaded() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let spec = SessionSpec {
            name: "worker",
            declare: Some(&self.core.topology),
            consume: true,
        };
        keep_session(&self.config.amqp, spec, &cancel, |session: Arc<Session>| {
            let cancel = &cancel;
            async move {
                let served = self.serve(session, cancel).await;
                self.up.set(false);
                served
            }
        })
        .await;
    }

    /// Runs the consumers until shutdown or a fault; `Err` says what failed.
    async fn serve(&self, session: Arc<Session>, cancel: &CancellationToken) -> Result<(), String> {
        let (topology, prefetch) = (&self.core.topology, self.config.amqp.prefetch);
        let started = async {
            let events = session.consume(topology.events(), prefetch).await?;
            let deliveries = session.consume(topology.deliveries(), prefetch).await?;
            let dead = session.consume(topology.dead(), ARCHIVING).await?;
            Ok::<_, anyhow::Error>((events, deliveries, dead))
        };
        let (mut events, mut deliveries, mut dead) = started.await.map_err(|e| format!("{e:#}"))?;
        // Ends the depth watcher and the outcome publisher with the session.
        let session_over = CancellationToken::new();
        let (fanout, deliverer, archive) = self.handlers(&session, &session_over);
        let metrics = &self.core.metrics;
        let depths = depth::watch(
            &session,
            topology,
            self.config.metrics.queue_refresh,
            &session_over,
            |queue, messages, consumers| {
                let gauge = metrics.queue_messages.with_label_values(&[queue]);
                gauge.set(i64::from(messages));
                if queue == topology.deliveries() {
                    // One consumer of <p>.deliveries per worker: they share each rate limit.
                    self.core.rates.set_workers(consumers as usize);
                }
            },
        );
        self.up.set(true);
        info!(queues = ?[topology.events(), topology.deliveries(), topology.dead()], "worker consuming");
        let tracker = &self.tracker;
        // A task from <p>.deliveries takes a delivery slot only once it has room
        // to be attempted: one waiting for a place, or parked, holds none.
        let taking = Arc::new(Semaphore::new(usize::from(prefetch)));
        let archiving = Arc::new(Semaphore::new(usize::from(ARCHIVING)));
        let consuming = async {
            let end = tokio::select! {
                end = events.run(fanout, self.fanout_slots.clone(), tracker, cancel) => end,
                end = deliveries.run(deliverer, taking, tracker, cancel) => end,
                end = dead.run(archive, archiving, tracker, cancel) => end,
            };
            session_over.cancel();
            end
        };
        let (end, ()) = tokio::join!(consuming, depths);
        if cancel.is_cancelled() {
            // The consumers (and so their channels) live until in-flight work is acked.
            self.drain().await;
        }
        drop((events, deliveries, dead));
        match end {
            ConsumeEnd::Stopped => Ok(()),
            ConsumeEnd::Ended(reason) => Err(reason),
        }
    }

    /// The consumers' handlers, publishing on this session: the fan-out of
    /// `<p>.events`, the deliverer of `<p>.deliveries`, the dead-letter archive.
    fn handlers(
        &self,
        session: &Arc<Session>,
        session_over: &CancellationToken,
    ) -> (Arc<FanOut>, Arc<Deliverer>, Arc<Archive>) {
        let (core, topology) = (&self.core, &self.core.topology);
        let publisher = session.publisher();
        let outcomes = self.config.outcomes.enabled.then(|| {
            let exchange = topology.outcomes().to_owned();
            Outcomes::start(
                session.clone(),
                exchange,
                core.metrics.clone(),
                session_over.clone(),
            )
        });
        let deliverer = Arc::new(Deliverer::new(core.clone(), publisher.clone(), outcomes));
        let max_event_bytes = self.config.limits.max_event_bytes;
        let fanout = Arc::new(FanOut::new(deliverer.clone(), max_event_bytes));
        let archive = Archive::new(publisher.clone(), topology.clone(), core.metrics.clone());
        (fanout, deliverer, Arc::new(archive))
    }

    /// Waits for in-flight messages up to `worker.shutdown_timeout`; called
    /// while the consumers' channels are still open, so their acks go through.
    async fn drain(&self) {
        let tracker = &self.tracker;
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
}
