//! Events in: the fan-out stage that turns one event from `<p>.events` into a
//! delivery per matching subscription, and the rejected queue for what is not
//! an event.

pub mod fanout;
pub mod reject;
