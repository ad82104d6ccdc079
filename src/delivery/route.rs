//! Where a task goes next, decided from what the deliverer knows and nothing
//! else: is a delivery slot free, does the subscription have room (a place
//! under its cap, no `Retry-After` pause, a token of its rate), does the broker
//! block publishing, may the holder wait here, was the task parked before.
//! Pure, so every branch has a test.

/// Whether the subscription can take an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Free,
    /// Slow or failing, and at its share of the worker; `soon` when a place
    /// should free within moments (a fast endpoint failing under load).
    AtCap {
        soon: bool,
    },
    /// Its endpoint asked for a pause (`Retry-After`), or its rate is used up.
    Held,
}

/// What the deliverer knows when it picks up a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// A delivery slot was free to take.
    pub slot_free: bool,
    pub room: Room,
    /// The broker blocks this worker's publishing connection (a memory or disk alarm).
    pub publishing_blocked: bool,
    /// The holder may wait here for a place (the `<p>.deliveries` consumer); the fan-out may not.
    pub may_wait: bool,
    /// A first attempt of an event that matched more subscriptions than this
    /// worker has slots: what it cannot start now is shared with other workers.
    pub wide: bool,
    /// The task was parked before and has come back.
    pub parked_before: bool,
}

/// What happens to the task now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Make the attempt here.
    Attempt,
    /// Into the delay queue where it waits until the subscription should have
    /// room: it holds no slot meanwhile, and any worker picks it up then.
    Park,
    /// Wait here for the subscription's next free place, then go on.
    WaitForPlace,
    /// Into `<p>.deliveries`, for any worker with a free slot (or, at the
    /// cap, a place soon).
    HandOff,
    /// Wait here for a slot, then make the attempt.
    WaitForSlot,
}

pub fn route(facts: Facts) -> Route {
    match facts.room {
        // While the broker blocks publishing, a park or a hand-off only waits out
        // its confirm timeout and returns the message, to be repeated when the
        // broker completes the publish after all; a place under the cap frees
        // within an attempt.
        Room::AtCap { .. } if facts.publishing_blocked => Route::WaitForPlace,
        // A place is near, or the task is back from a park once already: wait
        // for a place here rather than take a trip through the broker, where
        // the next worker may be full too.
        Room::AtCap { soon } if facts.may_wait && (soon || facts.parked_before) => {
            Route::WaitForPlace
        }
        // One hop to a holder that may wait, instead of two through a delay queue.
        Room::AtCap { soon: true } => Route::HandOff,
        // It needs no slot; a hand-off would only cost another hop before the park.
        Room::AtCap { .. } | Room::Held => Route::Park,
        Room::Free if facts.slot_free => Route::Attempt,
        // A slot frees within one attempt, while a hand-off costs the broker a
        // confirmed publish, a delivery and an ack, on cores it shares (at
        // saturation that halved the rate of ten subscriptions per event). Only a
        // fan-out wider than the worker shares the rest. And a hand-off would
        // only wait out its confirm timeout when publishing is blocked.
        Room::Free if facts.wide && !facts.publishing_blocked => Route::HandOff,
        Room::Free => Route::WaitForSlot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAN_OUT: Facts = Facts {
        slot_free: true,
        room: Room::Free,
        publishing_blocked: false,
        may_wait: false,
        wide: false,
        parked_before: false,
    };
    const WIDE_FAN_OUT: Facts = Facts {
        wide: true,
        ..FAN_OUT
    };
    const DELIVERIES: Facts = Facts {
        may_wait: true,
        ..FAN_OUT
    };

    #[test]
    fn with_room_and_a_free_slot_the_attempt_is_made_here() {
        assert_eq!(route(FAN_OUT), Route::Attempt);
        assert_eq!(route(DELIVERIES), Route::Attempt);
    }

    #[test]
    fn without_a_slot_only_a_wide_fan_out_hands_off_and_only_while_it_can_publish() {
        let busy = |holder: Facts, publishing_blocked| Facts {
            slot_free: false,
            publishing_blocked,
            ..holder
        };
        assert_eq!(route(busy(WIDE_FAN_OUT, false)), Route::HandOff);
        assert_eq!(route(busy(WIDE_FAN_OUT, true)), Route::WaitForSlot);
        assert_eq!(route(busy(FAN_OUT, false)), Route::WaitForSlot);
        assert_eq!(route(busy(FAN_OUT, true)), Route::WaitForSlot);
        assert_eq!(route(busy(DELIVERIES, false)), Route::WaitForSlot);
        assert_eq!(route(busy(DELIVERIES, true)), Route::WaitForSlot);
        assert_eq!(route(WIDE_FAN_OUT), Route::Attempt);
    }

    #[test]
    fn at_its_cap_with_no_place_soon_a_task_is_parked_whatever_the_slots() {
        for holder in [FAN_OUT, WIDE_FAN_OUT, DELIVERIES] {
            for slot_free in [true, false] {
                let facts = Facts {
                    slot_free,
                    room: Room::AtCap { soon: false },
                    ..holder
                };
                assert_eq!(route(facts), Route::Park, "{facts:?}");
            }
        }
    }

    #[test]
    fn at_its_cap_while_publishing_is_blocked_a_task_waits_for_a_place_but_a_held_one_parks() {
        for holder in [FAN_OUT, WIDE_FAN_OUT, DELIVERIES] {
            for soon in [true, false] {
                let facts = Facts {
                    publishing_blocked: true,
                    room: Room::AtCap { soon },
                    ..holder
                };
                assert_eq!(route(facts), Route::WaitForPlace, "{facts:?}");
            }
            let held = Facts {
                publishing_blocked: true,
                room: Room::Held,
                ..holder
            };
            assert_eq!(route(held), Route::Park, "{held:?}");
        }
    }

    #[test]
    fn a_task_back_from_a_park_waits_for_a_place_where_it_may_unless_the_subscription_is_held() {
        let back = |room, holder: Facts| Facts {
            room,
            parked_before: true,
            ..holder
        };
        let at_cap = Room::AtCap { soon: false };
        assert_eq!(route(back(at_cap, DELIVERIES)), Route::WaitForPlace);
        assert_eq!(route(back(at_cap, FAN_OUT)), Route::Park);
        assert_eq!(route(back(Room::Held, DELIVERIES)), Route::Park);
    }

    #[test]
    fn at_its_cap_with_a_place_soon_a_task_waits_for_it_or_goes_to_a_holder_that_may() {
        let soon = |holder: Facts| Facts {
            room: Room::AtCap { soon: true },
            ..holder
        };
        assert_eq!(route(soon(DELIVERIES)), Route::WaitForPlace);
        assert_eq!(route(soon(FAN_OUT)), Route::HandOff);
    }
}
