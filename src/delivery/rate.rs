//! Per-subscription rate limits (`rate_limit`, deliveries per second across
//! the deployment) without a Redis call per delivery: each worker keeps a token
//! bucket at its share of the rate, `rate_limit / workers`, where `workers` is
//! the number of consumers on `<p>.deliveries` the worker reads with its queue
//! depths. A bucket holds at most one second's worth. Tasks over the rate are
//! parked, spread at the rate tokens come, so they return about when they can go.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the last task parked for a token should find one.
    parked_until: Instant,
}

#[derive(Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Workers sharing each rate (at least 1).
    workers: AtomicUsize,
}

impl RateLimits {
    /// `workers` consume `<p>.deliveries` now (0, before the first count, reads as 1).
    pub fn set_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
    }

    /// Takes a token of `name`, limited to `rate` per second across the
    /// deployment; when there is none, how long the task should be parked.
    pub fn take(&self, name: &str, rate: f64) -> Result<(), Duration> {
        let share = rate / self.workers.load(Ordering::Relaxed).max(1) as f64;
        let now = Instant::now();
        let mut buckets = self.lock();
        let bucket = buckets.entry(name.to_owned()).or_insert(Bucket {
            tokens: share.max(1.0),
            at: now,
            parked_until: now,
        });
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * share;
        bucket.tokens = refilled.min(share.max(1.0));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let per_token = Duration::from_secs_f64(1.0 / share);
        let next = bucket.parked_until.max(now) + per_token;
        bucket.parked_until = next;
        Err(next - now)
    }

    /// Returns a token taken for an attempt that was not made here (handed off).
    pub fn give_back(&self, name: &str) {
        if let Some(bucket) = self.lock().get_mut(name) {
            bucket.tokens += 1.0;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_tokens_then_one_per_interval_and_the_rest_spread() {
        let limits = RateLimits::default();
        for _ in 0..10 {
            assert_eq!(limits.take("s", 10.0), Ok(()));
        }
        let waits: Vec<f64> = (0..3)
            .map(|_| limits.take("s", 10.0).unwrap_err().as_secs_f64())
            .collect();
        for (wait, expected) in waits.iter().zip([0.1, 0.2, 0.3]) {
            assert!((wait - expected).abs() < 0.02, "{waits:?}");
        }
        assert_eq!(
            limits.take("other", 10.0),
            Ok(()),
            "each subscription has its own"
        );
    }

    #[test]
    fn the_rate_is_shared_by_the_workers() {
        let limits = RateLimits::default();
        limits.set_workers(4);
        // 8 per second across 4 workers: 2 here.
        assert!(limits.take("s", 8.0).is_ok() && limits.take("s", 8.0).is_ok());
        let wait = limits.take("s", 8.0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.02, "{wait:?}");
    }

    #[test]
    fn a_token_given_back_is_there_again() {
        let limits = RateLimits::default();
        assert!(limits.take("s", 1.0).is_ok());
        assert!(limits.take("s", 1.0).is_err());
        limits.give_back("s");
        assert!(limits.take("s", 1.0).is_ok());
    }
}
