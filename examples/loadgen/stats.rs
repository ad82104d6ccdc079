//! Publish -> arrival latencies, one slot per event sequence number.
//!
//! A slot per event rather than a growing list: the first arrival of an event
//! wins, so a duplicate (herald delivers at least once) neither counts twice
//! nor hides a loss, and recording is a lock-free store from any receiver task.
//! Later arrivals of an event are counted as duplicates.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Nanoseconds since the Unix epoch: the clock events carry and arrivals are read
/// against. Producer and receiver are one process, so both read the same clock.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub struct Latencies {
    /// Latency in ns plus one; 0 means "not arrived yet".
    slots: Vec<AtomicU64>,
    arrived: AtomicU64,
    duplicates: AtomicU64,
    /// Events published before this record was made: an earlier run's tasks
    /// still in the queues, not this run's duplicates.
    strays: AtomicU64,
    since_ns: u64,
}

impl Latencies {
    /// Room for events `0..events`.
    pub fn new(events: u64) -> Self {
        Self {
            slots: (0..events).map(|_| AtomicU64::new(0)).collect(),
            arrived: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            since_ns: unix_nanos(),
        }
    }

    /// Records event `seq`, published at `sent_ns`, arriving at `arrived_ns`;
    /// a later arrival of the same event only counts as a duplicate, and unknown
    /// sequence numbers are ignored.
    pub fn record(&self, seq: u64, sent_ns: u64, arrived_ns: u64) {
        if sent_ns < self.since_ns {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.slots.get(i)) else {
            return;
        };
        let latency = arrived_ns.saturating_sub(sent_ns).saturating_add(1);
        if slot
            .compare_exchange(0, latency, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.arrived.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct events arrived so far.
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Arrivals of an event that had arrived before.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Arrivals of events sent before this run began.
    pub fn strays(&self) -> u64 {
        self.strays.load(Ordering::Relaxed)
    }

    /// Percentiles over the events that arrived; `missing` counts the rest.
    pub fn summary(&self) -> Summary {
        let mut ns: Vec<u64> = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&v| v > 0)
            .map(|v| v - 1)
            .collect();
        ns.sort_unstable();
        Summary {
            p50_ms: percentile_ms(&ns, 0.50),
            p95_ms: percentile_ms(&ns, 0.95),
            p99_ms: percentile_ms(&ns, 0.99),
            max_ms: percentile_ms(&ns, 1.0),
            missing: self.slots.len() as u64 - ns.len() as u64,
        }
    }
}

pub struct Summary {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub missing: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2} missing={}",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.missing
        )
    }
}

/// Nearest rank: the smallest sample with at least `q` of the samples at or below it.
fn percentile_ms(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ns: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        assert_eq!(percentile_ms(&ns, 0.50), 50.0);
        assert_eq!(percentile_ms(&ns, 0.99), 99.0);
        assert_eq!(percentile_ms(&ns, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn the_first_arrival_counts_and_the_rest_are_missing() {
        let l = Latencies::new(3);
        let sent = l.since_ns + 1_000;
        l.record(0, sent, sent + 2_999_000);
        l.record(0, sent, sent + 9_000_000); // a duplicate: counted as one, its latency ignored
        l.record(7, sent, sent + 1); // not published by this run: ignored
        l.record(1, l.since_ns - 1, sent); // sent before this run: a stray
        assert_eq!(l.arrived(), 1);
        assert_eq!(l.duplicates(), 1);
        assert_eq!(l.strays(), 1);
        let s = l.summary();
        assert_eq!(s.missing, 2);
        assert!((s.max_ms - 2.999).abs() < 1e-9);
    }
}
