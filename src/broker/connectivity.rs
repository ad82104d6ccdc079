//! Whether the broker sessions a process keeps are up: one for the API's
//! publishing link, one for the worker, or both. `/readyz` and
//! `herald_broker_connected` ask whether all of them are.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// One session's state, set by whoever keeps the session.
#[derive(Clone, Default)]
pub struct SessionUp(Arc<AtomicBool>);

impl SessionUp {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Every session a process keeps; each starts down.
#[derive(Default)]
pub struct Connectivity {
    sessions: Vec<SessionUp>,
}

impl Connectivity {
    /// Adds a session and returns the handle its keeper sets.
    pub fn track(&mut self) -> SessionUp {
        let session = SessionUp::default();
        self.sessions.push(session.clone());
        session
    }

    /// True when every session tracked is up.
    pub fn all_up(&self) -> bool {
        self.sessions.iter().all(SessionUp::get)
    }
}
