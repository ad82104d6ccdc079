//! Every worker's current snapshot of the subscriptions, shared: swapped
//! atomically (readers never lock) and kept current by a background task on
//! each pub/sub notice and on a 1 s check of the change counter. A store that
//! comes back empty is not adopted (DESIGN, Redis). What `/readyz` reports
//! about the snapshot is kept here too.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    credentials::Credentials,
    model::Subscription,
    snapshot::{Compiled, Snapshot},
    store::{Contents, Store, StoreError},
};

/// How often the counter is compared even without a notice: the bound on staleness.
const POLL: Duration = Duration::from_secs(1);

/// The shared handle: the current snapshot plus what `/readyz` reports about it.
pub struct Subscriptions {
    credentials: Arc<Credentials>,
    current: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    store_reset: AtomicBool,
    redis_connected: AtomicBool,
    confirmed_at: Mutex<Option<Instant>>,
}

impl Subscriptions {
    /// Templates compiled into the snapshot resolve `credential()` from `credentials`.
    pub fn new(credentials: Arc<Credentials>) -> Self {
        Self {
            credentials,
            current: ArcSwap::from_pointee(Snapshot::default()),
            loaded: AtomicBool::new(false),
            store_reset: AtomicBool::new(false),
            redis_connected: AtomicBool::new(false),
            confirmed_at: Mutex::new(None),
        }
    }

    /// Where `credential()` values come from, for templates compiled outside the snapshot.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A snapshot was loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Redis came back without the counter while we held subscriptions.
    pub fn store_reset(&self) -> bool {
        self.store_reset.load(Ordering::Acquire)
    }

    pub fn redis_connected(&self) -> bool {
        self.redis_connected.load(Ordering::Acquire)
    }

    /// Time since the snapshot was last confirmed current against Redis.
    pub fn age(&self) -> Option<Duration> {
        self.confirmed_at
            .lock()
            .expect("the confirmed_at lock is never poisoned: nothing panics under it")
            .map(|t| t.elapsed())
    }

    fn confirm(&self) {
        *self
            .confirmed_at
            .lock()
            .expect("the confirmed_at lock is never poisoned: nothing panics under it") =
            Some(Instant::now());
    }

    /// Compares the counter and reloads when it moved. Called by the refresher.
    pub async fn sync(&self, store: &Store) {
        let result = self.try_sync(store).await;
        self.redis_connected
            .store(result.is_ok(), Ordering::Release);
        if let Err(err) = result {
            debug!(error = %err, "subscription store unreachable, keeping the snapshot");
        }
    }

    async fn try_sync(&self, store: &Store) -> Result<(), StoreError> {
        let current = self.load();
        let version = store.version().await?;
        match version {
            Some(v) if self.is_loaded() && v == current.version && !self.store_reset() => {
                self.confirm();
                return Ok(());
            }
            None if self.is_loaded() && current.version > 0 => {
                // Redis restarted without its data: adopting the empty set would
                // silently stop every delivery. Keep serving the last snapshot.
                if !self.store_reset.swap(true, Ordering::AcqRel) {
                    error!(
                        subscriptions = current.len(),
                        "subscription store was reset (change counter missing); keeping the last snapshot until the store is written again (herald subscriptions apply)"
                    );
                }
                return Ok(());
            }
            None if self.is_loaded() => {
                self.confirm();
                return Ok(());
            }
            _ => {}
        }
        let contents = store.contents().await?;
        self.adopt(contents);
        Ok(())
    }

    fn adopt(&self, contents: Contents) {
        let version = contents.version.unwrap_or(0);
        let compiled = contents.records.into_iter().filter_map(|(name, raw)| {
            let parsed = serde_json::from_str::<Subscription>(&raw)
                .map_err(|e| e.to_string())
                .and_then(|sub| Compiled::compile(sub, &self.credentials));
            match parsed {
                Ok(c) => Some(c),
                Err(err) => {
                    warn!(subscription = %name, error = %err, "skipping an unreadable subscription record");
                    None
                }
            }
        });
        let snapshot = Snapshot::build(version, compiled);
        let (count, previous) = (snapshot.len(), self.load().version);
        self.current.store(Arc::new(snapshot));
        self.loaded.store(true, Ordering::Release);
        if self.store_reset.swap(false, Ordering::AcqRel) {
            info!("subscription store written again; snapshot replaced");
        }
        self.confirm();
        info!(
            subscriptions = count,
            version, previous, "subscription snapshot refreshed"
        );
    }

    /// Keeps the snapshot current until `cancel`: a notice triggers a sync at
    /// once, the 1 s poll catches missed notices and reconnects.
    pub async fn refresh(&self, store: &Store, cancel: &CancellationToken) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !cancel.is_cancelled() {
            let pubsub = async {
                let mut pubsub = store.client().get_async_pubsub().await?;
                pubsub.subscribe(store.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut notices = match tokio::time::timeout(Duration::from_secs(2), pubsub).await {
                Ok(Ok(pubsub)) => Some(pubsub.into_on_message()),
                Ok(Err(_)) | Err(_) => None,
            };
            // Sync after (re)subscribing so nothing written in between is missed.
            self.sync(store).await;
            loop {
                let notice = async {
                    match notices.as_mut() {
                        Some(stream) => stream.next().await.is_some(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    alive = notice => {
                        if !alive {
                            break; // pub/sub connection lost: resubscribe
                        }
                        self.sync(store).await;
                    }
                    _ = poll.tick() => {
                        self.sync(store).await;
                        if notices.is_none() {
                            break; // try to subscribe again
                        }
                    }
                }
            }
        }
    }
}
