//! Per-subscription caps on attempts in flight in one worker, so one slow
//! endpoint cannot take every delivery slot. The cap binds only on a slow
//! subscription (recent attempts averaging `SLOW` or more, or none finished
//! yet): a fast endpoint under heavy load may use the whole worker, because
//! handing its attempts off would only add broker hops.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Attempts this slow on average make a subscription subject to its cap.
pub const SLOW: Duration = Duration::from_millis(250);

/// Weight of the newest attempt in the moving average of attempt durations.
const ALPHA: f64 = 0.2;

#[derive(Default)]
struct Usage {
    in_flight: usize,
    /// Moving average of attempt durations in seconds; `None` until one finished.
    average: Option<f64>,
}

pub struct InFlightCaps {
    limit: usize,
    usage: Arc<Mutex<HashMap<String, Usage>>>,
}

/// A reserved place under one subscription's cap; dropping it records how long it was held.
pub struct CapGuard {
    name: String,
    started: Instant,
    usage: Arc<Mutex<HashMap<String, Usage>>>,
}

impl InFlightCaps {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            usage: Arc::default(),
        }
    }

    /// A place for one attempt, or `None` when the subscription is slow and at its cap.
    pub fn try_acquire(&self, name: &str) -> Option<CapGuard> {
        let mut usage = self.usage.lock().expect("the caps lock is never poisoned");
        let entry = usage.entry(name.to_owned()).or_default();
        let slow = entry.average.is_none_or(|avg| avg >= SLOW.as_secs_f64());
        if slow && entry.in_flight >= self.limit {
            return None;
        }
        entry.in_flight += 1;
        Some(CapGuard {
            name: name.to_owned(),
            started: Instant::now(),
            usage: self.usage.clone(),
        })
    }
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut usage = self.usage.lock().expect("the caps lock is never poisoned");
        if let Some(entry) = usage.get_mut(&self.name) {
            entry.in_flight -= 1;
            entry.average = Some(match entry.average {
                Some(avg) => avg + ALPHA * (took - avg),
                None => took,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_subscription_is_capped_until_it_proves_fast() {
        let caps = InFlightCaps::new(2);
        let a = caps.try_acquire("s").unwrap();
        let b = caps.try_acquire("s").unwrap();
        assert!(
            caps.try_acquire("s").is_none(),
            "no attempt finished yet: the cap binds"
        );
        drop((a, b)); // finished in microseconds: fast
        let held: Vec<_> = (0..10).map(|_| caps.try_acquire("s").unwrap()).collect();
        assert_eq!(held.len(), 10, "a fast subscription is not capped");
    }

    #[test]
    fn a_slow_subscription_stays_at_its_cap_and_others_are_unaffected() {
        let caps = InFlightCaps::new(1);
        {
            let mut usage = caps.usage.lock().unwrap();
            usage.insert(
                "slow".into(),
                Usage {
                    in_flight: 0,
                    average: Some(5.0),
                },
            );
        }
        let _held = caps.try_acquire("slow").unwrap();
        assert!(caps.try_acquire("slow").is_none());
        assert!(caps.try_acquire("other").is_some());
    }

    #[test]
    fn the_average_follows_recent_attempts() {
        let caps = InFlightCaps::new(1);
        caps.usage.lock().unwrap().insert(
            "s".into(),
            Usage {
                in_flight: 0,
                average: Some(1.0),
            },
        );
        for _ in 0..30 {
            drop(caps.try_acquire("s").unwrap());
        }
        let avg = caps.usage.lock().unwrap()["s"].average.unwrap();
        assert!(
            avg < SLOW.as_secs_f64(),
            "fast attempts pull a slow average down: {avg}"
        );
    }
}
