//! Every `herald_*` metric as a typed field, in a registry of its own (one test
//! process runs many apps, so nothing touches prometheus's global registry).
//! Label values come from enums' `as_str()`; `GET /metrics` renders `gather()`.

use crate::delivery::outcome::DeadReason;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    per_subscription: bool,
    pub events_received: IntCounter,
    pub events_rejected: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub attempt_duration: HistogramVec,
    pub delivery_latency: Histogram,
    pub deliveries_in_flight: IntGauge,
    pub subscriptions: IntGauge,
    pub snapshot_age: Gauge,
    pub broker_connected: IntGauge,
    pub redis_connected: IntGauge,
    pub queue_messages: IntGaugeVec,
    pub fanout_handoffs: IntCounterVec,
    pub build_info: IntGaugeVec,
}

/// `herald_deliveries_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Success,
    Retry,
    Dead,
    Skipped,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }
}

impl Metrics {
    /// `per_subscription` adds a `subscription` label to `herald_deliveries_total`.
    pub fn new(per_subscription: bool) -> Self {
        let registry = Registry::new();
        let delivery_labels: &[&str] = if per_subscription {
            &["outcome", "subscription"]
        } else {
            &["outcome"]
        };
        let m = Self {
            per_subscription,
            events_received: IntCounter::new(
                "herald_events_received_total",
                "Events taken from the events queue.",
            )
            .expect("valid metric"),
            events_rejected: IntCounterVec::new(
                Opts::new(
                    "herald_events_rejected_total",
                    "Events moved to the rejected queue, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            deliveries: IntCounterVec::new(
                Opts::new(
                    "herald_deliveries_total",
                    "Delivery attempts and their outcome (success, retry, dead, skipped).",
                ),
                delivery_labels,
            )
            .expect("valid metric"),
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "herald_dead_letters_total",
                    "Deliveries moved to the dead-letter queue, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            attempt_duration: HistogramVec::new(
                HistogramOpts::new(
                    "herald_delivery_attempt_duration_seconds",
                    "Duration of one HTTP attempt, by outcome.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0,
                ]),
                &["outcome"],
            )
            .expect("valid metric"),
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "herald_delivery_latency_seconds",
                    "Event time to successful delivery.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0,
                    900.0, 3600.0,
                ]),
            )
            .expect("valid metric"),
            deliveries_in_flight: IntGauge::new(
                "herald_deliveries_in_flight",
                "Delivery attempts running now.",
            )
            .expect("valid metric"),
            subscriptions: IntGauge::new(
                "herald_subscriptions",
                "Subscriptions in this worker's snapshot.",
            )
            .expect("valid metric"),
            snapshot_age: Gauge::new(
                "herald_subscription_snapshot_age_seconds",
                "Seconds since the subscription snapshot was last confirmed current.",
            )
            .expect("valid metric"),
            broker_connected: IntGauge::new(
                "herald_broker_connected",
                "1 while connected to RabbitMQ.",
            )
            .expect("valid metric"),
            redis_connected: IntGauge::new("herald_redis_connected", "1 while connected to Redis.")
                .expect("valid metric"),
            queue_messages: IntGaugeVec::new(
                Opts::new(
                    "herald_queue_messages",
                    "Messages ready in each herald queue.",
                ),
                &["queue"],
            )
            .expect("valid metric"),
            fanout_handoffs: IntCounterVec::new(
                Opts::new(
                    "herald_fanout_handoffs_total",
                    "First attempts the fan-out left for later instead of making them itself, by reason \
                     (no_slot: the worker was busy, handed to the deliveries queue; subscription_cap: \
                     at its in-flight cap, parked in a delay queue).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            build_info: IntGaugeVec::new(
                Opts::new("herald_build_info", "Always 1; the version label says which herald runs."),
                &["version"],
            )
            .expect("valid metric"),
            registry,
        };
        m.register_all();
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.preset_labels();
        m
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 14] = [
            Box::new(self.events_received.clone()),
            Box::new(self.events_rejected.clone()),
            Box::new(self.deliveries.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.attempt_duration.clone()),
            Box::new(self.delivery_latency.clone()),
            Box::new(self.deliveries_in_flight.clone()),
            Box::new(self.subscriptions.clone()),
            Box::new(self.snapshot_age.clone()),
            Box::new(self.broker_connected.clone()),
            Box::new(self.redis_connected.clone()),
            Box::new(self.queue_messages.clone()),
            Box::new(self.fanout_handoffs.clone()),
            Box::new(self.build_info.clone()),
        ];
        for c in collectors {
            self.registry
                .register(c)
                .expect("each metric is registered once in its own registry");
        }
    }

    /// Every known label value starts at 0: a series that appears only with its
    /// first increment hides that increment from `rate()` and `increase()`.
    fn preset_labels(&self) {
        for outcome in ["success", "retry", "dead"] {
            self.attempt_duration.with_label_values(&[outcome]);
        }
        if !self.per_subscription {
            for outcome in [
                DeliveryOutcome::Success,
                DeliveryOutcome::Retry,
                DeliveryOutcome::Dead,
                DeliveryOutcome::Skipped,
            ] {
                self.deliveries.with_label_values(&[outcome.as_str()]);
            }
        }
        for reason in DeadReason::ALL {
            self.dead_letters.with_label_values(&[reason.as_str()]);
        }
        for reason in ["invalid_json", "invalid_envelope", "too_large"] {
            self.events_rejected.with_label_values(&[reason]);
        }
        for reason in ["no_slot", "subscription_cap"] {
            self.fanout_handoffs.with_label_values(&[reason]);
        }
    }

    pub fn delivered(&self, outcome: DeliveryOutcome, subscription: &str) {
        if self.per_subscription {
            self.deliveries
                .with_label_values(&[outcome.as_str(), subscription])
                .inc();
        } else {
            self.deliveries.with_label_values(&[outcome.as_str()]).inc();
        }
    }

    /// The Prometheus text format of everything registered.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
