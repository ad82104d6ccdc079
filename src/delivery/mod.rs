//! Events out: a task per (event, subscription), rendered, signed and sent;
//! its outcome classified and made durable (retry in a delay queue, or a
//! dead letter) before the task is acked.

pub mod caps;
pub mod credentials;
pub mod dead;
pub mod egress;
pub mod http;
pub mod lookups;
pub mod outcome;
pub mod render;
pub mod request;
pub mod retry;
pub mod signature;
pub mod task;
pub mod template;
pub mod worker;
