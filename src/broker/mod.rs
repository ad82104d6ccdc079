//! RabbitMQ plumbing, no webhook logic: names and declarations, headers,
//! confirmed publishing, sessions and the one loop that reopens them, the
//! consume loop that settles every message (runs of acks as one), streams
//! read without consuming, and queue depths. No module outside this one
//! names a lapin type.

mod acks;
pub mod connectivity;
pub mod consumer;
pub mod depth;
pub mod headers;
pub mod link;
pub mod notifier;
pub mod publisher;
pub mod reconnect;
pub mod session;
pub mod stream;
pub mod topology;
