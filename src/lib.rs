//! herald: durable, queue-backed webhook delivery.
//!
//! The flow of an event, one module per step:
//!
//! ```text
//! producer -> <p>.events (exchange + queue)         broker::topology
//!   FAN-OUT  decode + validate (invalid -> rejected) ingest::{envelope, reject}
//!            match the snapshot                      subscriptions::{snapshot, pattern, selector}
//!            a task per matching subscription        ingest::fanout -> delivery::task
//!            confirmed, then ack                     broker::publisher
//! <p>.deliveries
//!   DELIVER  look the subscription up again          delivery::worker
//!            render -> sign -> HTTP                  delivery::{render, signature, http}
//!            2xx ack | retry via delay queue | dead  delivery::{outcome, retry, dead}
//! ```
//!
//! Around it: `config`, `app` (build + run per role), `supervisor` (the worker's
//! broker session and reconnects), `api` (HTTP), `metrics`, `telemetry`,
//! `shutdown`, `cli`, and `sink` (a local receiver for trying herald out).

pub mod api;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod ingest;
pub mod metrics;
pub mod shutdown;
pub mod sink;
pub mod subscriptions;
pub mod supervisor;
pub mod telemetry;
