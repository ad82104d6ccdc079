//! What every delivery needs and outlives a broker session: the snapshot, the
//! store (to disable a subscription after a 410), the HTTP client, the queue
//! names, the retry policy, the per-subscription caps and the worker's delivery
//! slots, shared by the fan-out and the `<p>.deliveries` consumer.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    caps::InFlightCaps, failing::FailureClock, http::HttpClient, rate::RateLimits,
    retry::RetryPolicy,
};
use crate::{
    broker::topology::Topology,
    config::Config,
    metrics::Metrics,
    subscriptions::{current::Subscriptions, store::Store},
};

pub struct DeliveryCore {
    pub subscriptions: Arc<Subscriptions>,
    pub store: Store,
    pub http: HttpClient,
    pub topology: Arc<Topology>,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    /// `delivery.timeout`: a subscription's `timeout` overrides it.
    pub timeout: Duration,
    pub caps: InFlightCaps,
    pub rates: RateLimits,
    /// Auto-disable's clock.
    pub failures: FailureClock,
    /// `delivery.disable_after`.
    pub disable_after: Duration,
    /// `worker.concurrency` places for attempts, whoever makes them.
    pub slots: Arc<Semaphore>,
    /// `worker.concurrency`: how many `slots` there are.
    pub concurrency: usize,
}

impl DeliveryCore {
    pub fn new(
        config: &Config,
        subscriptions: Arc<Subscriptions>,
        store: Store,
        http: HttpClient,
        topology: Arc<Topology>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let delivery = &config.delivery;
        Self {
            failures: FailureClock::new(store.clone(), delivery.disable_after),
            subscriptions,
            store,
            http,
            topology,
            metrics,
            policy: RetryPolicy::from_config(delivery),
            timeout: delivery.timeout,
            caps: InFlightCaps::new(
                delivery.max_in_flight_per_subscription.get() as usize,
                config.worker.concurrency.get() as usize,
            ),
            rates: RateLimits::default(),
            disable_after: delivery.disable_after,
            slots: Arc::new(Semaphore::new(config.worker.concurrency.get() as usize)),
            concurrency: config.worker.concurrency.get() as usize,
        }
    }

    /// A delivery slot if one is free now.
    pub fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// The next delivery slot to come free.
    pub async fn wait_for_slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the delivery slots are never closed")
    }
}
