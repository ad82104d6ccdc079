//! Places for attempts, per subscription, in one worker: what keeps one slow
//! or failing endpoint from taking the worker. A subscription is *binding*
//! while it is slow (recent attempts averaging `SLOW` or more, or none finished
//! yet) or failing (its last attempt failed). A binding subscription holds at
//! most `limit` places, the smaller of `delivery.max_in_flight_per_subscription`
//! and a quarter of the worker's slots, and all binding subscriptions together
//! at most half of them: the rest stays for healthy endpoints, whatever the two
//! settings are. A fast, healthy endpoint is not capped (handing its attempts
//! off would only add broker hops). A `Retry-After` on a 429 or 503 pauses the
//! whole subscription until it has passed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// Attempts this slow on average make a subscription binding.
pub const SLOW: Duration = Duration::from_millis(250);

/// Weight of the newest attempt in the moving average of attempt durations.
const ALPHA: f64 = 0.2;
/// The longest a task waits in a worker for a place before it is parked again.
const LONGEST_HOLD: Duration = Duration::from_secs(10);
/// Tasks that may wait for a subscription's places, in rounds of its places.
const WAITING_ROUNDS: usize = 4;
/// A place expected to free within this is *soon*: worth waiting for in a
/// worker rather than parking for (a park is two broker hops, and the shortest
/// delay queue lasts seconds with the default schedule).
const SOON: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Usage {
    in_flight: usize,
    /// Tasks waiting in this worker for one of its places.
    waiting: usize,
    /// Moving average of attempt durations in seconds; `None` until one finished.
    average: Option<f64>,
    /// When the last task parked so far should find a free place.
    parked_until: Option<Instant>,
    /// The last finished attempt failed.
    failing: bool,
    /// No attempt before this (a `Retry-After`).
    paused_until: Option<Instant>,
    /// Since when places have been held without one freeing: the oldest
    /// attempt in flight is at least that old.
    busy_since: Option<Instant>,
}

impl Usage {
    fn binding(&self) -> bool {
        self.failing || self.average.is_none_or(|avg| avg >= SLOW.as_secs_f64())
    }

    /// Seconds an attempt takes, as far as this worker knows: the moving
    /// average, but never less than the attempts in flight have already taken
    /// (before the first attempt ends, and when an endpoint slows down, the
    /// average alone would send parked tasks back far too early).
    fn average(&self, now: Instant) -> f64 {
        let busy = self
            .busy_since
            .map_or(0.0, |since| (now - since).as_secs_f64());
        self.average.unwrap_or(SLOW.as_secs_f64()).max(busy)
    }
}

/// Usage by subscription name. Keys are shared with the guards, so taking a
/// place (on every attempt) allocates nothing once a subscription is known.
#[derive(Default)]
struct Table {
    subscriptions: HashMap<Arc<str>, Usage>,
    /// Places held by binding subscriptions, all together.
    binding: usize,
    /// Tasks waiting for a place, all together.
    waiting: usize,
}

/// Why a subscription has no place for an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Binding, and at its limit or at the binding share of the worker;
    /// `soon` when a place should free for this task within [`SOON`] (a fast
    /// endpoint that fails, under load).
    Cap { soon: bool },
    /// Paused by a `Retry-After` for this long yet.
    Paused(Duration),
}

pub struct InFlightCaps {
    /// The most places one binding subscription holds.
    limit: usize,
    /// The most places all binding subscriptions hold together.
    binding_limit: usize,
    /// The most tasks waiting for places, all together: the worker's slots.
    waiting_limit: usize,
    table: Arc<Mutex<Table>>,
    /// Told whenever a binding subscription's place is given back.
    freed: Arc<Notify>,
}

/// A place for one attempt; dropping it gives the place back and records how
/// long it was held and whether the attempt failed.
pub struct CapGuard {
    name: Arc<str>,
    started: Instant,
    failed: bool,
    /// Counted among the binding subscriptions' places.
    binding: bool,
    /// No attempt was made under this place: it says nothing about the endpoint.
    unused: bool,
    table: Arc<Mutex<Table>>,
    freed: Arc<Notify>,
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
    /// `max_in_flight` is `delivery.max_in_flight_per_subscription`, `slots` `worker.concurrency`.
    pub fn new(max_in_flight: usize, slots: usize) -> Self {
        Self {
            limit: max_in_flight.min(slots / 4).max(1),
            binding_limit: (slots / 2).max(1),
            waiting_limit: slots.max(1),
            table: Arc::default(),
            freed: Arc::default(),
        }
    }

    /// A place for one attempt, or why there is none now.
    pub fn try_acquire(&self, name: &str) -> Result<CapGuard, Full> {
        let mut table = self.lock();
        let binding_held = table.binding;
        let (key, usage) = entry(&mut table, name);
        let now = Instant::now();
        if let Some(until) = usage.paused_until.filter(|until| *until > now) {
            return Err(Full::Paused(until - now));
        }
        let binding = usage.binding();
        if binding && (usage.in_flight >= self.limit || binding_held >= self.binding_limit) {
            let soon = self.expected_wait(usage, now) < SOON;
            return Err(Full::Cap { soon });
        }
        if usage.in_flight == 0 {
            usage.busy_since = Some(now);
        }
        usage.in_flight += 1;
        if binding {
            table.binding += 1;
        }
        Ok(CapGuard {
            name: key,
            started: now,
            failed: false,
            binding,
            unused: false,
            table: self.table.clone(),
            freed: self.freed.clone(),
        })
    }

    /// Waits in this worker for a place of `name`, about as long as the places
    /// ahead of it take to free (bounded by `LONGEST_HOLD`); `None` when none
    /// came, or when `WAITING_ROUNDS` rounds of its places already wait (those
    /// hold messages the deliveries consumer could give to others).
    pub async fn wait_for_place(&self, name: &str) -> Option<CapGuard> {
        let within = {
            let mut table = self.lock();
            if table.waiting >= self.waiting_limit {
                return None;
            }
            let (_, usage) = entry(&mut table, name);
            if usage.waiting >= self.limit * WAITING_ROUNDS {
                return None;
            }
            let rounds = 1.0 + (usage.waiting / self.limit) as f64;
            usage.waiting += 1;
            let average = usage.average(Instant::now());
            table.waiting += 1;
            Duration::from_secs_f64(average * 1.5 * rounds).clamp(SLOW, LONGEST_HOLD)
        };
        let deadline = Instant::now() + within;
        let place = loop {
            let freed = self.freed.notified();
            match self.try_acquire(name) {
                Ok(place) => break Some(place),
                Err(Full::Paused(_)) => break None,
                Err(Full::Cap { .. }) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, freed).await.is_err() {
                break None;
            }
        };
        let mut table = self.lock();
        table.waiting -= 1;
        entry(&mut table, name).1.waiting -= 1;
        place
    }

    /// How long a task turned away now should be parked: places free at
    /// `limit / average` per second, and each task parked before it takes one
    /// of them, so parked tasks come back about when they can run instead of
    /// cycling through the broker.
    pub fn park_for(&self, name: &str) -> Duration {
        let mut table = self.lock();
        let (_, usage) = entry(&mut table, name);
        let now = Instant::now();
        let per_place = Duration::from_secs_f64(usage.average(now) / self.limit as f64);
        let next = usage.parked_until.filter(|at| *at > now).unwrap_or(now) + per_place;
        usage.parked_until = Some(next);
        next - now
    }

    /// How long a task turned away now would wait for a place here: behind
    /// the tasks already parked or waiting, one place freeing every
    /// `average / limit`.
    fn expected_wait(&self, usage: &Usage, now: Instant) -> Duration {
        let per_place = usage.average(now) / self.limit as f64;
        let parked = usage
            .parked_until
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        parked + Duration::from_secs_f64(per_place * (usage.waiting + 1) as f64)
    }

    /// No attempt of `name` for `wait` (its endpoint answered 429 or 503 with a `Retry-After`).
    pub fn pause(&self, name: &str, wait: Duration) {
        let mut table = self.lock();
        let until = Instant::now() + wait;
        let usage = entry(&mut table, name).1;
        usage.paused_until = Some(usage.paused_until.map_or(until, |at| at.max(until)));
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The counts stay consistent whatever panicked while holding it.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The usage of `name` (created on first sight) and its shared key.
fn entry<'a>(table: &'a mut Table, name: &str) -> (Arc<str>, &'a mut Usage) {
    let subscriptions = &mut table.subscriptions;
    let key = match subscriptions.get_key_value(name) {
        Some((key, _)) => key.clone(),
        None => {
            let key: Arc<str> = Arc::from(name);
            subscriptions.insert(key.clone(), Usage::default());
            key
        }
    };
    let usage = subscriptions
        .get_mut(name)
        .expect("found or inserted just above");
    (key, usage)
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut table = lock(&self.table);
        if self.binding {
            table.binding -= 1;
        }
        if let Some(usage) = table.subscriptions.get_mut(&*self.name) {
            usage.in_flight -= 1;
            if usage.in_flight == 0 {
                usage.busy_since = None;
            } else if !self.unused {
                usage.busy_since = Some(Instant::now());
            }
            if !self.unused {
                usage.failing = self.failed;
                usage.average = Some(match usage.average {
                    Some(avg) => avg + ALPHA * (took - avg),
                    None => took,
                });
            }
        }
        drop(table);
        if self.binding {
            self.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caps where `name` already has `usage`.
    fn caps_with(max_in_flight: usize, slots: usize, name: &str, usage: Usage) -> InFlightCaps {
        let caps = InFlightCaps::new(max_in_flight, slots);
        caps.lock().subscriptions.insert(name.into(), usage);
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
    fn an_unknown_subscription_is_capped_until_it_proves_fast() {
        let caps = InFlightCaps::new(2, 128);
        let a = caps.try_acquire("s").unwrap();
        let b = caps.try_acquire("s").unwrap();
        assert_eq!(
            caps.try_acquire("s").err(),
            Some(Full::Cap { soon: false }),
            "no attempt finished yet: the cap binds"
        );
        drop((a, b)); // finished in microseconds: fast
        let held: Vec<_> = (0..10).map(|_| caps.try_acquire("s").unwrap()).collect();
        assert_eq!(held.len(), 10, "a fast subscription is not capped");
    }

    #[test]
    fn a_slow_subscription_stays_at_its_cap_and_others_are_unaffected() {
        let caps = caps_with(1, 128, "slow", averaging(5.0));
        let _held = caps.try_acquire("slow").unwrap();
        assert!(caps.try_acquire("slow").is_err());
        assert!(caps.try_acquire("other").is_ok());
    }

    #[test]
    fn a_binding_subscription_never_holds_more_than_a_quarter_of_the_slots() {
        // A cap of 64 on a worker of 16 slots: 4 places.
        let caps = caps_with(64, 16, "slow", averaging(5.0));
        let held: Vec<_> = std::iter::from_fn(|| caps.try_acquire("slow").ok())
            .take(64)
            .collect();
        assert_eq!(held.len(), 4);
    }

    #[test]
    fn binding_subscriptions_together_leave_half_the_slots_to_healthy_ones() {
        let caps = InFlightCaps::new(64, 16);
        for name in ["a", "b", "c"] {
            caps.lock()
                .subscriptions
                .insert(name.into(), averaging(5.0));
        }
        let held: Vec<_> = ["a", "b", "c"]
            .iter()
            .flat_map(|n| std::iter::from_fn(|| caps.try_acquire(n).ok()).take(8))
            .collect();
        assert_eq!(held.len(), 8, "4 + 4 + 0 of 16 slots");
        caps.lock()
            .subscriptions
            .insert("fast".into(), averaging(0.01));
        let fast: Vec<_> = (0..8).map(|_| caps.try_acquire("fast").unwrap()).collect();
        assert_eq!(fast.len(), 8);
    }

    #[test]
    fn the_average_follows_recent_attempts() {
        let caps = caps_with(1, 128, "s", averaging(1.0));
        for _ in 0..30 {
            drop(caps.try_acquire("s").unwrap());
        }
        let avg = caps.lock().subscriptions["s"].average.unwrap();
        assert!(
            avg < SLOW.as_secs_f64(),
            "fast attempts pull a slow average down: {avg}"
        );
    }

    #[test]
    fn parked_tasks_are_spread_at_the_rate_places_free_up() {
        let usage = Usage {
            in_flight: 4,
            ..averaging(2.0)
        };
        let caps = caps_with(4, 128, "slow", usage);
        // 4 places, 2 s each: one frees every 0.5 s; each parked task queues behind the last.
        let waits: Vec<f64> = (0..3)
            .map(|_| caps.park_for("slow").as_secs_f64())
            .collect();
        for (wait, expected) in waits.iter().zip([0.5, 1.0, 1.5]) {
            assert!((wait - expected).abs() < 0.05, "{waits:?}");
        }
        // Another subscription has its own schedule.
        assert!(caps.park_for("other").as_secs_f64() < 0.1);
    }

    #[test]
    fn places_held_long_without_one_freeing_count_as_slow_attempts() {
        let caps = InFlightCaps::new(2, 128);
        let (first, _second) = (
            caps.try_acquire("s").unwrap(),
            caps.try_acquire("s").unwrap(),
        );
        // Nothing finished yet, but both places have been held for 4 s: an
        // attempt takes at least that, not the 250 ms a newcomer is assumed.
        let four_seconds_ago = Instant::now() - Duration::from_secs(4);
        caps.lock().subscriptions.get_mut("s").unwrap().busy_since = Some(four_seconds_ago);
        let wait = caps.park_for("s").as_secs_f64();
        assert!((wait - 2.0).abs() < 0.05, "4 s over 2 places: {wait}");
        drop(first); // a place frees: the count starts over
        let busy_since = caps.lock().subscriptions["s"].busy_since.unwrap();
        assert!(busy_since.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn a_failing_subscription_is_capped_until_an_attempt_succeeds() {
        let caps = InFlightCaps::new(1, 128);
        drop(caps.try_acquire("s").unwrap()); // fast: the cap no longer binds
        let mut failed = caps.try_acquire("s").unwrap();
        failed.failed();
        drop(failed);
        let held = caps.try_acquire("s").unwrap();
        assert!(caps.try_acquire("s").is_err(), "failing: the cap binds");
        drop(held); // succeeded
        let both = (caps.try_acquire("s"), caps.try_acquire("s"));
        assert!(both.0.is_ok() && both.1.is_ok(), "healthy and fast again");
    }

    #[test]
    fn a_place_given_back_unused_teaches_nothing() {
        let usage = Usage {
            failing: true,
            ..averaging(5.0)
        };
        let caps = caps_with(1, 128, "slow", usage);
        caps.try_acquire("slow").unwrap().release_unused();
        let table = caps.lock();
        let usage = &table.subscriptions["slow"];
        assert_eq!(
            (usage.in_flight, usage.average, usage.failing),
            (0, Some(5.0), true)
        );
        assert_eq!(table.binding, 0);
    }

    #[test]
    fn a_retry_after_pauses_the_whole_subscription() {
        let caps = InFlightCaps::new(64, 128);
        caps.pause("busy", Duration::from_secs(30));
        match caps.try_acquire("busy") {
            Err(Full::Paused(left)) => assert!(left > Duration::from_secs(29)),
            other => panic!("{:?}", other.err()),
        }
        caps.pause("busy", Duration::from_secs(1));
        assert!(
            matches!(caps.try_acquire("busy"), Err(Full::Paused(left)) if left > Duration::from_secs(29)),
            "a shorter pause never cuts a longer one"
        );
        assert!(caps.try_acquire("other").is_ok());
    }

    #[tokio::test]
    async fn a_task_waiting_for_a_place_gets_the_next_one_freed() {
        let caps = Arc::new(caps_with(1, 128, "slow", averaging(1.0)));
        let held = caps.try_acquire("slow").unwrap();
        let waiter = tokio::spawn({
            let caps = caps.clone();
            async move { caps.wait_for_place("slow").await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(
            waiter.await.unwrap(),
            "the freed place went to the waiting task"
        );
        assert_eq!(caps.lock().waiting, 0);
    }

    #[tokio::test]
    async fn no_more_tasks_wait_than_the_subscription_has_places() {
        let caps = caps_with(1, 128, "slow", averaging(0.3));
        let _held = caps.try_acquire("slow").unwrap();
        let started = Instant::now();
        let (first, second) =
            tokio::join!(caps.wait_for_place("slow"), caps.wait_for_place("slow"));
        assert!(
            first.is_none() && second.is_none(),
            "the place was never freed"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(caps.lock().waiting, 0);
    }
}
