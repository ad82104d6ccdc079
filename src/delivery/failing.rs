//! Auto-disable (`delivery.disable_after`): a subscription whose attempts have
//! all failed for that long, without a single success, is to be disabled. The
//! clock starts at the first failure after a success and is kept in Redis, so
//! every worker shares it; it is written only when a subscription has been
//! failing for a moment (`GRACE`) or stops failing after that, never per
//! delivery, so an endpoint that fails now and then costs Redis nothing. Each
//! worker remembers the state it last saw, and asks Redis again before it acts
//! on an old one.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tracing::debug;

use super::dead::now_millis;
use crate::subscriptions::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Succeeding,
    /// Failing since this unix millisecond, as far as this worker knows;
    /// `shared` once the stretch is in Redis (which keeps the earliest start
    /// any worker wrote).
    Failing {
        since: i64,
        shared: bool,
    },
}

/// The longest a failing stretch stays in one worker before it is written to
/// Redis; shorter when `disable_after` is (a thousandth of it).
const GRACE: Duration = Duration::from_secs(10);

pub struct FailureClock {
    store: Store,
    /// Zero: never disable.
    after: Duration,
    /// What this worker last knew, by subscription; absent: nothing yet.
    states: Mutex<HashMap<String, State>>,
}

impl FailureClock {
    pub fn new(store: Store, after: Duration) -> Self {
        Self {
            store,
            after,
            states: Mutex::default(),
        }
    }

    /// Counts one attempt's result; `true` when `name` has now failed for
    /// `disable_after` with no success and is to be disabled.
    pub async fn record(&self, name: &str, succeeded: bool) -> bool {
        if self.after.is_zero() {
            return false;
        }
        match self.advance(name, succeeded).await {
            Ok(disable) => disable,
            Err(err) => {
                // Redis away: the next attempt tries again; nothing is disabled blindly.
                debug!(subscription = name, error = %err, "failure clock not updated");
                false
            }
        }
    }

    /// Forgets `name`'s clock once it is disabled (or deleted).
    pub async fn reset(&self, name: &str) {
        self.states().remove(name);
        if let Err(err) = self.store.clear_failing(name).await {
            debug!(subscription = name, error = %err, "failure clock not cleared");
        }
    }

    async fn advance(&self, name: &str, succeeded: bool) -> Result<bool, StoreError> {
        let known = self.states().get(name).copied();
        let now = now_millis();
        let state = match (known, succeeded) {
            (Some(State::Succeeding), true) => return Ok(false),
            (None, true) => {
                // The first word of it here: a stretch written before (by another
                // worker, or before a restart) ends. Most were never failing.
                if self.store.failing_since(name).await?.is_some() {
                    self.store.clear_failing(name).await?;
                }
                State::Succeeding
            }
            (Some(State::Failing { shared, .. }), true) => {
                if shared {
                    self.store.clear_failing(name).await?;
                }
                State::Succeeding
            }
            (None | Some(State::Succeeding), false) => State::Failing {
                since: now,
                shared: false,
            },
            (
                Some(State::Failing {
                    since,
                    shared: false,
                }),
                false,
            ) => {
                if lasted(since, now) < self.grace() {
                    return Ok(false);
                }
                let since = self.store.mark_failing(name, since).await?;
                State::Failing {
                    since,
                    shared: true,
                }
            }
            (
                Some(State::Failing {
                    since,
                    shared: true,
                }),
                false,
            ) => {
                if lasted(since, now) < self.after {
                    return Ok(false);
                }
                // Due by what this worker saw; another may have seen a success since.
                let since = match self.store.failing_since(name).await? {
                    Some(since) => since,
                    None => self.store.mark_failing(name, now).await?,
                };
                State::Failing {
                    since,
                    shared: true,
                }
            }
        };
        self.remember(name, state);
        let due = matches!(state, State::Failing { since, shared: true } if lasted(since, now) >= self.after);
        Ok(due)
    }

    fn grace(&self) -> Duration {
        (self.after / 1000).min(GRACE)
    }

    fn remember(&self, name: &str, state: State) {
        let mut states = self.states();
        match states.get_mut(name) {
            Some(known) => *known = state,
            None => {
                states.insert(name.to_owned(), state);
            }
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long since `since`, both unix milliseconds.
fn lasted(since: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(now.saturating_sub(since)).unwrap_or(0))
}
