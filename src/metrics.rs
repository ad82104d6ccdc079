//! Every `herald_*` metric as a typed field, in a registry of its own (one test
//! process runs many apps, so nothing touches prometheus's global registry).
//! Label values come from enums' `as_str()`; `GET /metrics` renders `gather()`.
//! Gauges of state (connections, snapshot) are set by the scrape itself.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

use crate::dead_letter::DeadReason;

pub struct Metrics {
    registry: Registry,
    families: Vec<(String, Kind)>,
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

/// What series a metric family shows as: a histogram adds `_bucket`, `_sum` and `_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
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
    pub const ALL: [Self; 4] = [Self::Success, Self::Retry, Self::Dead, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }
}

/// `herald_events_rejected_total{reason}`: why an event went to `<p>.rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not a JSON object at all.
    InvalidJson,
    /// A JSON object that breaks an envelope rule.
    InvalidEnvelope,
    /// Over `limits.max_event_bytes`.
    TooLarge,
}

impl RejectReason {
    pub const ALL: [Self; 3] = [Self::InvalidJson, Self::InvalidEnvelope, Self::TooLarge];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::TooLarge => "too_large",
        }
    }
}

/// `herald_fanout_handoffs_total{reason}`: why the fan-out left a first attempt for later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// No free delivery slot: handed to `<p>.deliveries`.
    NoSlot,
    /// The subscription at its in-flight cap: parked in a delay queue.
    SubscriptionCap,
}

impl Handoff {
    pub const ALL: [Self; 2] = [Self::NoSlot, Self::SubscriptionCap];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSlot => "no_slot",
            Self::SubscriptionCap => "subscription_cap",
        }
    }
}

/// A metric family as Prometheus shows it: name, help and label names.
struct Spec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const EVENTS_RECEIVED: Spec = Spec {
    name: "herald_events_received_total",
    help: "Events taken from the events queue.",
    labels: &[],
};
const EVENTS_REJECTED: Spec = Spec {
    name: "herald_events_rejected_total",
    help: "Events moved to the rejected queue, by reason.",
    labels: &["reason"],
};
const DELIVERIES: Spec = Spec {
    name: "herald_deliveries_total",
    help: "Delivery attempts and their outcome (success, retry, dead, skipped).",
    labels: &["outcome"],
};
/// `DELIVERIES` with `metrics.per_subscription`.
const DELIVERIES_PER_SUBSCRIPTION: Spec = Spec {
    labels: &["outcome", "subscription"],
    ..DELIVERIES
};
const DEAD_LETTERS: Spec = Spec {
    name: "herald_dead_letters_total",
    help: "Deliveries moved to the dead-letter queue, by reason.",
    labels: &["reason"],
};
const ATTEMPT_DURATION: Spec = Spec {
    name: "herald_delivery_attempt_duration_seconds",
    help: "Duration of one HTTP attempt, by outcome.",
    labels: &["outcome"],
};
/// Seconds, up to the 5-minute ceiling of a subscription's timeout.
const ATTEMPT_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const DELIVERY_LATENCY: Spec = Spec {
    name: "herald_delivery_latency_seconds",
    help: "Event time to successful delivery.",
    labels: &[],
};
/// Seconds: retries stretch event time to delivery to hours.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
const DELIVERIES_IN_FLIGHT: Spec = Spec {
    name: "herald_deliveries_in_flight",
    help: "Delivery attempts running now.",
    labels: &[],
};
const SUBSCRIPTIONS: Spec = Spec {
    name: "herald_subscriptions",
    help: "Subscriptions in this worker's snapshot.",
    labels: &[],
};
const SNAPSHOT_AGE: Spec = Spec {
    name: "herald_subscription_snapshot_age_seconds",
    help: "Seconds since the subscription snapshot was last confirmed current.",
    labels: &[],
};
const BROKER_CONNECTED: Spec = Spec {
    name: "herald_broker_connected",
    help: "1 while connected to RabbitMQ.",
    labels: &[],
};
const REDIS_CONNECTED: Spec = Spec {
    name: "herald_redis_connected",
    help: "1 while connected to Redis.",
    labels: &[],
};
const QUEUE_MESSAGES: Spec = Spec {
    name: "herald_queue_messages",
    help: "Messages ready in each herald queue.",
    labels: &["queue"],
};
const FANOUT_HANDOFFS: Spec = Spec {
    name: "herald_fanout_handoffs_total",
    help: "First attempts the fan-out left for later instead of making them itself, by reason \
           (no_slot: the worker was busy, handed to the deliveries queue; subscription_cap: \
           at its in-flight cap, parked in a delay queue).",
    labels: &["reason"],
};
const BUILD_INFO: Spec = Spec {
    name: "herald_build_info",
    help: "Always 1; the version label says which herald runs.",
    labels: &["version"],
};

impl Metrics {
    /// `per_subscription` adds a `subscription` label to `herald_deliveries_total`.
    pub fn new(per_subscription: bool) -> Self {
        let mut r = Registrar::default();
        let deliveries = if per_subscription {
            &DELIVERIES_PER_SUBSCRIPTION
        } else {
            &DELIVERIES
        };
        let m = Self {
            events_received: r.add(Kind::Counter, IntCounter::with_opts(opts(&EVENTS_RECEIVED))),
            events_rejected: r.counter_vec(&EVENTS_REJECTED),
            deliveries: r.counter_vec(deliveries),
            dead_letters: r.counter_vec(&DEAD_LETTERS),
            attempt_duration: r.add(
                Kind::Histogram,
                HistogramVec::new(
                    histogram_opts(&ATTEMPT_DURATION, &ATTEMPT_BUCKETS),
                    ATTEMPT_DURATION.labels,
                ),
            ),
            delivery_latency: r.add(
                Kind::Histogram,
                Histogram::with_opts(histogram_opts(&DELIVERY_LATENCY, &LATENCY_BUCKETS)),
            ),
            deliveries_in_flight: r.gauge(&DELIVERIES_IN_FLIGHT),
            subscriptions: r.gauge(&SUBSCRIPTIONS),
            snapshot_age: r.add(Kind::Gauge, Gauge::with_opts(opts(&SNAPSHOT_AGE))),
            broker_connected: r.gauge(&BROKER_CONNECTED),
            redis_connected: r.gauge(&REDIS_CONNECTED),
            queue_messages: r.add(
                Kind::Gauge,
                IntGaugeVec::new(opts(&QUEUE_MESSAGES), QUEUE_MESSAGES.labels),
            ),
            fanout_handoffs: r.counter_vec(&FANOUT_HANDOFFS),
            build_info: r.add(
                Kind::Gauge,
                IntGaugeVec::new(opts(&BUILD_INFO), BUILD_INFO.labels),
            ),
            per_subscription,
            registry: r.registry,
            families: r.families,
        };
        m.preset_labels();
        m
    }

    /// Every known label value starts at 0: a series that appears only with its
    /// first increment hides that increment from `rate()` and `increase()`.
    fn preset_labels(&self) {
        for outcome in [
            DeliveryOutcome::Success,
            DeliveryOutcome::Retry,
            DeliveryOutcome::Dead,
        ] {
            self.attempt_duration.with_label_values(&[outcome.as_str()]);
        }
        if !self.per_subscription {
            for outcome in DeliveryOutcome::ALL {
                self.deliveries.with_label_values(&[outcome.as_str()]);
            }
        }
        for reason in DeadReason::ALL {
            self.dead_letters.with_label_values(&[reason.as_str()]);
        }
        for reason in RejectReason::ALL {
            self.events_rejected.with_label_values(&[reason.as_str()]);
        }
        for reason in Handoff::ALL {
            self.fanout_handoffs.with_label_values(&[reason.as_str()]);
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
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

    /// Every metric family registered, by name, whether or not it has a series yet.
    pub fn families(&self) -> &[(String, Kind)] {
        &self.families
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

fn opts(spec: &Spec) -> Opts {
    Opts::new(spec.name, spec.help)
}

fn histogram_opts(spec: &Spec, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(spec.name, spec.help).buckets(buckets.to_vec())
}

/// Registers each metric as it is made, and remembers its family.
#[derive(Default)]
struct Registrar {
    registry: Registry,
    families: Vec<(String, Kind)>,
}

impl Registrar {
    fn add<C: Collector + Clone + 'static>(
        &mut self,
        kind: Kind,
        made: prometheus::Result<C>,
    ) -> C {
        let collector = made.expect("every herald metric has a valid name, help and labels");
        for desc in collector.desc() {
            self.families.push((desc.fq_name.clone(), kind));
        }
        self.registry
            .register(Box::new(collector.clone()))
            .expect("each metric is registered once in its own registry");
        collector
    }

    fn counter_vec(&mut self, spec: &Spec) -> IntCounterVec {
        self.add(Kind::Counter, IntCounterVec::new(opts(spec), spec.labels))
    }

    fn gauge(&mut self, spec: &Spec) -> IntGauge {
        self.add(Kind::Gauge, IntGauge::with_opts(opts(spec)))
    }
}
