//! Where a task goes next, decided from three facts and nothing else: is a
//! delivery slot free, is the subscription at its in-flight cap, does the
//! broker block publishing. Pure, so every branch has a test.

/// What the deliverer knows when it picks up a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The task holds a delivery slot, or one was free to take.
    pub slot_free: bool,
    /// The subscription is slow or failing and has its cap of attempts in flight.
    pub at_cap: bool,
    /// The broker blocks this worker's publishing connection (a memory or disk alarm).
    pub publishing_blocked: bool,
}

/// What happens to the task now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Make the attempt here.
    Attempt,
    /// Into the delay queue where it waits until the subscription should have
    /// room: it holds no slot meanwhile, and any worker picks it up then.
    Park,
    /// Into `<p>.deliveries`, for any worker with a free slot.
    HandOff,
    /// Wait here for a slot, then make the attempt.
    WaitForSlot,
}

pub fn route(facts: Facts) -> Route {
    if facts.at_cap {
        // It needs no slot; a hand-off would only cost another hop before the park.
        Route::Park
    } else if facts.slot_free {
        Route::Attempt
    } else if facts.publishing_blocked {
        // A hand-off would only wait out its confirm timeout; waiting still delivers.
        Route::WaitForSlot
    } else {
        Route::HandOff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(slot_free: bool, at_cap: bool, publishing_blocked: bool) -> Route {
        route(Facts {
            slot_free,
            at_cap,
            publishing_blocked,
        })
    }

    #[test]
    fn a_subscription_at_its_cap_is_parked_whatever_else_holds() {
        for slot_free in [true, false] {
            for publishing_blocked in [true, false] {
                assert_eq!(route_of(slot_free, true, publishing_blocked), Route::Park);
            }
        }
    }

    #[test]
    fn with_a_free_slot_the_attempt_is_made_here() {
        assert_eq!(route_of(true, false, false), Route::Attempt);
        assert_eq!(route_of(true, false, true), Route::Attempt);
    }

    #[test]
    fn without_a_slot_the_task_is_handed_off() {
        assert_eq!(route_of(false, false, false), Route::HandOff);
    }

    #[test]
    fn without_a_slot_while_publishing_is_blocked_the_task_waits_for_one() {
        assert_eq!(route_of(false, false, true), Route::WaitForSlot);
    }
}
