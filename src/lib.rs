//! herald: durable, queue-backed webhook delivery.
//!
//! The flow of an event, one module per step, read top to bottom:
//!
//! ```text
//! producer -> <p>.events (exchange + queue)          broker::topology
//!   consume, settle each message (ack | requeue)      broker::{consumer, acks}
//!   FAN-OUT  decode + validate (invalid -> rejected)  event::{self, cloudevents}, ingest::{fanout, reject}
//!            match the snapshot                       subscriptions::{snapshot, pattern, selector, filter}
//!            each match down the one delivery path    delivery::deliverer
//! <p>.deliveries, delay queues
//!   DELIVER  look the subscription up again           delivery::deliverer
//!            attempt here | hand off | park at cap    delivery::route
//!            render -> sign -> HTTP                   delivery::{attempt, request, render, cloudevents, http}
//!            2xx | retry via delay queue | dead       delivery::{outcome, retry, dead}
//!            confirmed, then the message is acked     broker::{publisher, acks}
//! ```
//!
//! Layers, each using only those above it in this list (`tests/it/layers.rs`
//! keeps it so): `event`, `field_error`, `dead_letter`, `config`, `shutdown`,
//! `telemetry`; `subscriptions`; `broker`; `metrics`; `delivery`; `ingest`;
//! `api`; `app` (build + run per role; `app::worker` runs the worker role),
//! `cli` and `sink` (a local receiver for trying herald out).

pub mod api;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod delivery;
pub mod event;
pub mod field_error;
pub mod ingest;
pub mod metrics;
pub mod shutdown;
pub mod sink;
pub mod subscriptions;
pub mod telemetry;
