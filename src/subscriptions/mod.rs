//! Who gets what: the subscription resource, its Redis store, the matching
//! rules (event-type patterns, label selectors) and each worker's snapshot.

pub mod model;
pub mod pattern;
pub mod selector;
pub mod snapshot;
pub mod store;
