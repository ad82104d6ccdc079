//! Whether a subscription has room for an attempt now: a place under its cap
//! (`caps`), no `Retry-After` pause, and a token of its `rate_limit` (`rate`).
//! The place and token are taken here, and given back when the task goes
//! elsewhere.

use std::time::Duration;

use super::{
    caps::{CapGuard, Full},
    route::Room,
    shared::DeliveryCore,
};
use crate::{metrics::Parked, subscriptions::model::Subscription};

pub enum Admission {
    /// A place, and a token when the subscription is rate-limited.
    Place(CapGuard),
    /// Slow or failing, at its share of the worker; `soon` when a place
    /// should free within moments.
    AtCap { soon: bool },
    /// Paused or over its rate: room again after `wait`.
    Held { wait: Duration, why: Parked },
}

impl Admission {
    pub fn room(&self) -> Room {
        match self {
            Self::Place(_) => Room::Free,
            Self::AtCap { soon } => Room::AtCap { soon: *soon },
            Self::Held { .. } => Room::Held,
        }
    }

    /// Gives back what was taken for an attempt that is not made here.
    pub fn give_back(self, core: &DeliveryCore, sub: &Subscription) {
        if let Self::Place(place) = self {
            place.release_unused();
            if sub.rate_limit.is_some() {
                core.rates.give_back(&sub.name);
            }
        }
    }
}

pub fn admit(core: &DeliveryCore, sub: &Subscription) -> Admission {
    match core.caps.try_acquire(&sub.name) {
        Ok(place) => with_token(core, sub, place),
        Err(Full::Cap { soon }) => Admission::AtCap { soon },
        Err(Full::Paused(wait)) => Admission::Held {
            wait,
            why: Parked::RetryAfter,
        },
    }
}

/// [`admit`], waiting in this worker for a place first (a task back from a park).
pub async fn admit_when_free(core: &DeliveryCore, sub: &Subscription) -> Admission {
    match core.caps.wait_for_place(&sub.name).await {
        Some(place) => with_token(core, sub, place),
        None => admit(core, sub),
    }
}

fn with_token(core: &DeliveryCore, sub: &Subscription, place: CapGuard) -> Admission {
    let Some(rate) = sub.rate_limit else {
        return Admission::Place(place);
    };
    match core.rates.take(&sub.name, rate) {
        Ok(()) => Admission::Place(place),
        Err(wait) => {
            place.release_unused();
            Admission::Held {
                wait,
                why: Parked::RateLimit,
            }
        }
    }
}
