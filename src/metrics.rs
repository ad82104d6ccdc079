//! Every `herald_*` metric as a typed field, in a registry of its own (one test
//! process runs many apps, so nothing touches prometheus's global registry).
//! Label values come from enums' `as_str()`; `GET /metrics` renders `gather()`.
//! Gauges of state (connections, snapshot) are set by the scrape itself.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Registry, TextEncoder, core::Collector,
};

use crate::dead_letter::DeadReason;

/// Declares `Metrics`, one public field per `herald_*` family, each registered by
/// `Metrics::new`. A row reads `field: Type = "name" [by [labels]] [per
/// subscription] [in BUCKETS];`; its doc comment is the family's help text, and
/// `per subscription` adds a `subscription` label under `metrics.per_subscription`.
macro_rules! families {
    ($(
        #[doc = $help:literal]
        $field:ident: $type:ident =
            $name:literal $(by [$($label:literal),*])? $(per $per:ident)? $(in $buckets:expr)?;
    )+) => {
        pub struct Metrics {
            registry: Registry,
            families: Vec<(String, Kind)>,
            per_subscription: bool,
            $(#[doc = $help] pub $field: $type,)+
        }

        impl Metrics {
            /// `per_subscription` adds a `subscription` label to `herald_deliveries_total`.
            pub fn new(per_subscription: bool) -> Self {
                let mut r = Registrar {
                    registry: Registry::new(),
                    families: Vec::new(),
                    per_subscription,
                };
                let metrics = Self {
                    $($field: r.add(
                        $name,
                        $help,
                        &[$($($label),*)?],
                        None::<&[f64]> $(.or(Some(&$buckets)))?.unwrap_or_default(),
                        false $(|| { stringify!($per); true })?,
                    ),)+
                    registry: r.registry,
                    families: r.families,
                    per_subscription,
                };
                metrics.preset_labels();
                metrics
            }
        }
    };
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
    /// No free delivery slot for an event wider than the worker: handed to `<p>.deliveries`.
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

families! {
    /// Events taken from the events queue.
    events_received: IntCounter = "herald_events_received_total";
    /// Events moved to the rejected queue, by reason.
    events_rejected: IntCounterVec = "herald_events_rejected_total" by ["reason"];
    /// Delivery attempts and their outcome (success, retry, dead, skipped).
    deliveries: IntCounterVec = "herald_deliveries_total" by ["outcome"] per subscription;
    /// Deliveries moved to the dead-letter queue, by reason.
    dead_letters: IntCounterVec = "herald_dead_letters_total" by ["reason"];
    /// Duration of one HTTP attempt, by outcome.
    attempt_duration: HistogramVec =
        "herald_delivery_attempt_duration_seconds" by ["outcome"] in ATTEMPT_BUCKETS;
    /// Event time to successful delivery.
    delivery_latency: Histogram = "herald_delivery_latency_seconds" in LATENCY_BUCKETS;
    /// Delivery attempts running now.
    deliveries_in_flight: IntGauge = "herald_deliveries_in_flight";
    /// Subscriptions in this worker's snapshot.
    subscriptions: IntGauge = "herald_subscriptions";
    /// Seconds since the subscription snapshot was last confirmed current.
    snapshot_age: Gauge = "herald_subscription_snapshot_age_seconds";
    /// 1 while connected to RabbitMQ.
    broker_connected: IntGauge = "herald_broker_connected";
    /// 1 while connected to Redis.
    redis_connected: IntGauge = "herald_redis_connected";
    /// Messages ready in each herald queue.
    queue_messages: IntGaugeVec = "herald_queue_messages" by ["queue"];
    /// First attempts the fan-out left for later instead of making them itself, by reason (no_slot: the worker was busy and the event matched more subscriptions than it has slots, handed to the deliveries queue; subscription_cap: at its in-flight cap, parked in a delay queue, or handed to the deliveries queue when a place frees within moments).
    fanout_handoffs: IntCounterVec = "herald_fanout_handoffs_total" by ["reason"];
    /// Tasks parked in a delay queue until their subscription has room, by reason (subscription_cap, retry_after, rate_limit) and whether the task had been parked before (again).
    parked: IntCounterVec = "herald_parked_total" by ["reason", "again"];
    /// Outcome events (outcomes.enabled), by result: published, dropped (the queue was full), failed (the broker could not take them).
    outcome_events: IntCounterVec = "herald_outcome_events_total" by ["result"];
    /// Subscriptions herald disabled, by reason: gone (a 410), failing (no success for delivery.disable_after).
    subscriptions_disabled: IntCounterVec = "herald_subscriptions_disabled_total" by ["reason"];
    /// Always 1; the version label says which herald runs.
    build_info: IntGaugeVec = "herald_build_info" by ["version"];
}

/// `herald_parked_total{reason}`: why a task waits in a delay queue for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// Slow or failing, at its share of the worker.
    SubscriptionCap,
    /// Its endpoint answered 429 or 503 with a `Retry-After`.
    RetryAfter,
    /// Its `rate_limit` is used up for now.
    RateLimit,
}

impl Parked {
    pub const ALL: [Self; 3] = [Self::SubscriptionCap, Self::RetryAfter, Self::RateLimit];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionCap => "subscription_cap",
            Self::RetryAfter => "retry_after",
            Self::RateLimit => "rate_limit",
        }
    }
}

/// `herald_outcome_events_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeResult {
    Published,
    /// The queue before the publisher was full.
    Dropped,
    /// The broker could not take it.
    Failed,
}

impl OutcomeResult {
    pub const ALL: [Self; 3] = [Self::Published, Self::Dropped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Dropped => "dropped",
            Self::Failed => "failed",
        }
    }
}

/// `herald_subscriptions_disabled_total{reason}`: why herald disabled a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// The endpoint answered 410 Gone.
    Gone,
    /// No success for `delivery.disable_after`.
    Failing,
}

impl DisabledReason {
    pub const ALL: [Self; 2] = [Self::Gone, Self::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Failing => "failing",
        }
    }
}

/// Seconds, up to the 5-minute ceiling of a subscription's timeout.
const ATTEMPT_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Seconds: retries stretch event time to delivery to hours.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

impl Metrics {
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
        for reason in Parked::ALL {
            for again in ["false", "true"] {
                self.parked.with_label_values(&[reason.as_str(), again]);
            }
        }
        for result in OutcomeResult::ALL {
            self.outcome_events.with_label_values(&[result.as_str()]);
        }
        for reason in DisabledReason::ALL {
            self.subscriptions_disabled
                .with_label_values(&[reason.as_str()]);
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

    pub fn outcome(&self, result: OutcomeResult) {
        let events = &self.outcome_events;
        events.with_label_values(&[result.as_str()]).inc();
    }

    pub fn disabled(&self, reason: DisabledReason) {
        let disabled = &self.subscriptions_disabled;
        disabled.with_label_values(&[reason.as_str()]).inc();
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

/// Registers each family as it is made, and remembers it.
struct Registrar {
    registry: Registry,
    families: Vec<(String, Kind)>,
    per_subscription: bool,
}

impl Registrar {
    /// `help` may carry the spaces of a doc comment; `per_subscription` asks for a
    /// `subscription` label when the deployment wants one.
    fn add<F: Family>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
        per_subscription: bool,
    ) -> F {
        let mut labels = labels.to_vec();
        if per_subscription && self.per_subscription {
            labels.push("subscription");
        }
        let mut opts = HistogramOpts::new(name, help.trim());
        if !buckets.is_empty() {
            opts = opts.buckets(buckets.to_vec());
        }
        let family =
            F::make(opts, &labels).expect("every herald metric has a valid name and labels");
        self.families.push((name.to_owned(), F::KIND));
        self.registry
            .register(Box::new(family.clone()))
            .expect("each metric is registered once in its own registry");
        family
    }
}

/// How each prometheus type is made from a family's options and label names.
trait Family: Collector + Clone + 'static {
    const KIND: Kind;
    fn make(opts: HistogramOpts, labels: &[&str]) -> prometheus::Result<Self>;
}

macro_rules! family {
    ($type:ident, $kind:ident, |$opts:ident, $labels:pat_param| $make:expr) => {
        impl Family for $type {
            const KIND: Kind = Kind::$kind;
            fn make($opts: HistogramOpts, $labels: &[&str]) -> prometheus::Result<Self> {
                $make
            }
        }
    };
}

family!(IntCounter, Counter, |o, _| IntCounter::with_opts(
    o.common_opts
));
family!(IntCounterVec, Counter, |o, labels| IntCounterVec::new(
    o.common_opts,
    labels
));
family!(Histogram, Histogram, |o, _| Histogram::with_opts(o));
family!(HistogramVec, Histogram, |o, labels| HistogramVec::new(
    o, labels
));
family!(IntGauge, Gauge, |o, _| IntGauge::with_opts(o.common_opts));
family!(Gauge, Gauge, |o, _| Gauge::with_opts(o.common_opts));
family!(IntGaugeVec, Gauge, |o, labels| IntGaugeVec::new(
    o.common_opts,
    labels
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_registered_with_its_doc_comment_as_help() {
        let metrics = Metrics::new(false);
        let text = metrics.render();
        assert!(
            text.contains(
                "# HELP herald_events_received_total Events taken from the events queue.\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE herald_delivery_latency_seconds histogram\n"));
        let names: Vec<&str> = metrics.families().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 17);
        assert!(names.contains(&"herald_queue_messages"), "{names:?}");
    }

    #[test]
    fn per_subscription_labels_deliveries_and_nothing_else() {
        for per_subscription in [false, true] {
            let metrics = Metrics::new(per_subscription);
            metrics.delivered(DeliveryOutcome::Success, "ci");
            let text = metrics.render();
            let labelled = r#"herald_deliveries_total{outcome="success",subscription="ci"} 1"#;
            let plain = r#"herald_deliveries_total{outcome="success"} 1"#;
            assert_eq!(text.contains(labelled), per_subscription, "{text}");
            assert_eq!(text.contains(plain), !per_subscription, "{text}");
            assert!(text.contains(r#"herald_dead_letters_total{reason="gone"} 0"#));
        }
    }
}
