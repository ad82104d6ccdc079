//! The fault-injection suite: RELIABILITY.md's scenarios against real
//! processes — herald's binary, RabbitMQ and Redis (the test's own where the
//! fault would disturb others), real HTTP receivers — each ending in a ledger
//! report where `missing` must be 0.
//!
//! The scenarios marked `#[ignore]` run with `scripts/chaos.sh`; the rest (a
//! bounded subset) also run in `scripts/test.sh`.

mod lab;
mod ledger;
mod load;
mod services;

mod broker;
mod clock;
mod http;
mod partition;
mod redis;
mod soak;
mod worker;
