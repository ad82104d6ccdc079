//! RabbitMQ plumbing, no webhook logic: names and declarations, confirmed
//! publishing, sessions that reconnect, and the shared consume loop.

pub mod consumer;
pub mod depth;
pub mod link;
pub mod publisher;
pub mod session;
pub mod topology;
