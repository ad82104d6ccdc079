//! The fault-injection suite: RELIABILITY.md's scenarios against real
//! processes — herald's binary, RabbitMQ and Redis (the test's own where the
//! fault would disturb others), real HTTP receivers — each ending in a ledger
//! report where `missing` must be 0.
//!
//! `scripts/chaos.sh` runs them all, one at a time (nextest profile `chaos`);
//! the default and CI runs take only the bounded subset named in
//! `.config/nextest.toml`; `scripts/soak.sh` runs the soak.

mod lab;
mod ledger;
mod load;

mod broker;
mod clock;
mod cluster;
mod fleet;
mod http;
mod partition;
mod redis;
mod soak;
mod worker;
