//! herald's integration tests: the real `App` against the real RabbitMQ and
//! Redis of this machine and real HTTP receivers, one file per behaviour.
#![allow(clippy::unwrap_used)]

mod support;

mod api_errors;
mod api_events;
mod api_subscriptions;
mod auto_disable;
mod chaos;
mod cli;
mod cloudevents;
mod config_errors;
mod dead_letters;
mod delivery;
mod egress;
mod faults;
mod filters;
mod formats;
mod gitops;
mod idempotency;
mod isolation;
mod layers;
mod matching;
mod observability_files;
mod openapi;
mod outcome_events;
mod prometheus;
mod rejected;
mod retries;
mod secrets;
mod sink;
mod test_route;
mod tls;
