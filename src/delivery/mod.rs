//! Events out: a task per (event, subscription) goes down one path
//! (`deliverer`): routed (attempt here, hand off, or park at the cap), rendered,
//! signed and sent, its outcome classified and made durable (a retry in a
//! delay queue, or a dead letter) before the message that carried it is acked.

pub mod admission;
pub mod attempt;
pub mod caps;
pub mod cloudevents;
pub mod dead;
pub mod deliverer;
pub mod disable;
pub mod egress;
pub mod failing;
pub mod http;
pub mod lookups;
pub mod outcome;
pub mod outcomes;
pub mod rate;
pub mod render;
pub mod request;
pub mod retry;
pub mod route;
pub mod shared;
pub mod task;
