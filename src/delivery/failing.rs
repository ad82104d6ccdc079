//! Auto-disable (`delivery.disable_after`): a subscription whose attempts have
//! all failed for that long, without a single success, is to be disabled. The
//! clock starts at the first failure after a success and is kept in Redis, so
//! every worker shares it; it is written only when a subscription goes from
//! succeeding to failing or back, never per delivery. Each worker remembers the
//! state it last saw, and asks Redis again before it acts on an old one.

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
    /// Failing since this unix millisecond, as this worker last read it.
    Failing(i64),
}

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
            (Some(State::Failing(since)), false) if !self.due(since, now) => return Ok(false),
            (None, true) => {
                // Read before writing: most subscriptions were never failing.
                if self.store.failing_since(name).await?.is_some() {
                    self.store.clear_failing(name).await?;
                }
                State::Succeeding
            }
            (Some(State::Failing(_)), true) => {
                self.store.clear_failing(name).await?;
                State::Succeeding
            }
            (None | Some(State::Succeeding), false) => {
                State::Failing(self.store.mark_failing(name, now).await?)
            }
            (Some(State::Failing(_)), false) => {
                // Due by what this worker saw; another may have seen a success since.
                match self.store.failing_since(name).await? {
                    Some(since) => State::Failing(since),
                    None => State::Failing(self.store.mark_failing(name, now).await?),
                }
            }
        };
        self.states().insert(name.to_owned(), state);
        Ok(matches!(state, State::Failing(since) if self.due(since, now)))
    }

    fn due(&self, since: i64, now: i64) -> bool {
        let failing_for = u64::try_from(now.saturating_sub(since)).unwrap_or(0);
        Duration::from_millis(failing_for) >= self.after
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
