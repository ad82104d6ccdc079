//! Events in: the envelope and its rules, the rejected queue, and the fan-out
//! stage that turns one event into a delivery task per matching subscription.

pub mod envelope;
pub mod fanout;
pub mod reject;
