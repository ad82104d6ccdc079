//! Per-subscription caps on attempts in flight in one worker, so one slow
//! endpoint cannot take every delivery slot. The cap binds only on a slow
//! subscription (recent attempts averaging `SLOW` or more, or none finished
//! yet) or a failing one (its last attempt failed): a fast, healthy endpoint
//! under heavy load may use the whole worker, because handing its attempts off
//! would only add broker hops, while an endpoint that is down is not hammered
//! by its retries the moment it comes back.

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
    /// When the last task parked so far should find a free place.
    parked_until: Option<Instant>,
    /// The last finished attempt failed.
    failing: bool,
}

/// Usage by subscription name. Keys are shared with the guards, so taking a
/// place (on every attempt) allocates nothing once a subscription is known.
type Table = HashMap<Arc<str>, Usage>;

pub struct InFlightCaps {
    limit: usize,
    usage: Arc<Mutex<Table>>,
}

/// A reserved place under one subscription's cap; dropping it records how
/// long it was held and whether the attempt failed.
pub struct CapGuard {
    name: Arc<str>,
    started: Instant,
    failed: bool,
    /// No attempt was made under this place: it says nothing about the endpoint.
    unused: bool,
    usage: Arc<Mutex<Table>>,
}

impl CapGuard {
    /// Marks the attempt made under this place as failed.
    pub fn failed(&mut self) {
        self.failed = true;
    }

    /// Gives the place back without an attempt: neither the average nor the
    /// failing state learns anything from it.
    pub fn release_unused(mut self) {
        self.unused = true;
    }
}

impl InFlightCaps {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            usage: Arc::default(),
        }
    }

    /// A place for one attempt, or `None` when the subscription is slow or failing and at its cap.
    pub fn try_acquire(&self, name: &str) -> Option<CapGuard> {
        let mut usage = self.usage.lock().expect("the caps lock is never poisoned");
        let (name, entry) = entry(&mut usage, name);
        let slow = entry.average.is_none_or(|avg| avg >= SLOW.as_secs_f64());
        if (slow || entry.failing) && entry.in_flight >= self.limit {
            return None;
        }
        entry.in_flight += 1;
        Some(CapGuard {
            name,
            started: Instant::now(),
            failed: false,
            unused: false,
            usage: self.usage.clone(),
        })
    }

    /// How long a task turned away now should wait before it is likely to
    /// find a place: places free at `limit / average` per second, and each
    /// task parked before it takes one of them. Parked tasks then come back
    /// about when they can run, instead of cycling through the broker while
    /// the subscription is at its cap.
    pub fn wait_for_place(&self, name: &str) -> Duration {
        let mut usage = self.usage.lock().expect("the caps lock is never poisoned");
        let (_, entry) = entry(&mut usage, name);
        let average = entry.average.unwrap_or(SLOW.as_secs_f64());
        let per_place = Duration::from_secs_f64(average / self.limit.max(1) as f64);
        let now = Instant::now();
        let next = entry.parked_until.filter(|at| *at > now).unwrap_or(now) + per_place;
        entry.parked_until = Some(next);
        next - now
    }
}

/// The usage of `name` (created on first sight) and its shared key.
fn entry<'a>(usage: &'a mut Table, name: &str) -> (Arc<str>, &'a mut Usage) {
    let key = match usage.get_key_value(name) {
        Some((key, _)) => key.clone(),
        None => {
            let key: Arc<str> = Arc::from(name);
            usage.insert(key.clone(), Usage::default());
            key
        }
    };
    let entry = usage.get_mut(name).expect("found or inserted just above");
    (key, entry)
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut usage = self.usage.lock().expect("the caps lock is never poisoned");
        if let Some(entry) = usage.get_mut(&*self.name) {
            entry.in_flight -= 1;
            if self.unused {
                return;
            }
            entry.failing = self.failed;
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

    /// Caps of `limit` where `name` already has `usage`.
    fn caps_with(limit: usize, name: &str, usage: Usage) -> InFlightCaps {
        let caps = InFlightCaps::new(limit);
        caps.usage.lock().unwrap().insert(name.into(), usage);
        caps
    }

    /// Recent attempts that averaged `seconds`.
    fn averaging(seconds: f64) -> Usage {
        Usage {
            average: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn a_slow_subscription_stays_at_its_cap_and_others_are_unaffected() {
        let caps = caps_with(1, "slow", averaging(5.0));
        let _held = caps.try_acquire("slow").unwrap();
        assert!(caps.try_acquire("slow").is_none());
        assert!(caps.try_acquire("other").is_some());
    }

    #[test]
    fn the_average_follows_recent_attempts() {
        let caps = caps_with(1, "s", averaging(1.0));
        for _ in 0..30 {
            drop(caps.try_acquire("s").unwrap());
        }
        let avg = caps.usage.lock().unwrap()["s"].average.unwrap();
        assert!(
            avg < SLOW.as_secs_f64(),
            "fast attempts pull a slow average down: {avg}"
        );
    }

    #[test]
    fn parked_tasks_are_spread_at_the_rate_places_free_up() {
        let caps = caps_with(
            4,
            "slow",
            Usage {
                in_flight: 4,
                ..averaging(2.0)
            },
        );
        // 4 places, 2 s each: one frees every 0.5 s; each parked task queues behind the last.
        let waits: Vec<f64> = (0..3)
            .map(|_| caps.wait_for_place("slow").as_secs_f64())
            .collect();
        for (wait, expected) in waits.iter().zip([0.5, 1.0, 1.5]) {
            assert!((wait - expected).abs() < 0.05, "{waits:?}");
        }
        // Another subscription has its own schedule.
        assert!(caps.wait_for_place("other").as_secs_f64() < 0.1);
    }

    #[test]
    fn a_failing_subscription_is_capped_until_an_attempt_succeeds() {
        let caps = InFlightCaps::new(1);
        drop(caps.try_acquire("s").unwrap()); // fast: the cap no longer binds
        let mut failed = caps.try_acquire("s").unwrap();
        failed.failed();
        drop(failed);
        let held = caps.try_acquire("s").unwrap();
        assert!(caps.try_acquire("s").is_none(), "failing: the cap binds");
        drop(held); // succeeded
        let both = (caps.try_acquire("s"), caps.try_acquire("s"));
        assert!(
            both.0.is_some() && both.1.is_some(),
            "healthy and fast again"
        );
    }

    #[test]
    fn a_place_given_back_unused_teaches_nothing() {
        let caps = caps_with(
            1,
            "slow",
            Usage {
                failing: true,
                ..averaging(5.0)
            },
        );
        caps.try_acquire("slow").unwrap().release_unused();
        let usage = caps.usage.lock().unwrap();
        assert_eq!(usage["slow"].in_flight, 0);
        assert_eq!(usage["slow"].average, Some(5.0));
        assert!(usage["slow"].failing);
    }
}
