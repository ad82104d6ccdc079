//! Who gets what: the subscription resource and its validation, its signing
//! secrets and templates, the matching rules (event-type patterns, label
//! selectors), its Redis store and each worker's compiled snapshot.

pub mod apply;
pub mod credentials;
pub mod current;
pub mod file;
pub mod filter;
pub mod input;
pub mod model;
pub mod pattern;
pub mod selector;
pub mod signature;
pub mod snapshot;
pub mod store;
pub mod template;
