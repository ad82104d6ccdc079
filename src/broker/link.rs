//! The API's session, kept open: `POST /v1/events` publishes on it and the
//! dead-letter routes read streams on it, and both get `Unavailable` (503)
//! while the broker is away. The link reconnects with backoff until the app
//! is cancelled.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    connectivity::SessionUp,
    publisher::PublishError,
    reconnect::keep_session,
    session::{Session, SessionSpec},
    topology::Topology,
};
use crate::config::AmqpConfig;

#[derive(Default)]
pub struct Link {
    /// The open session; `None` while the broker is away.
    session: ArcSwapOption<Session>,
}

impl Link {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a session open until `cancel`, declaring `topology` when given;
    /// `up` follows every connect and disconnect.
    pub async fn run(
        &self,
        config: &AmqpConfig,
        declare: Option<&Topology>,
        up: SessionUp,
        cancel: &CancellationToken,
    ) {
        let spec = SessionSpec {
            name: "api",
            declare,
            // The dead-letter log is read on connections of its own (`stream`).
            consume: false,
        };
        let up = &up;
        keep_session(config, spec, cancel, |session: Arc<Session>| async move {
            info!("api connected to the broker");
            self.session.store(Some(session.clone()));
            up.set(true);
            let served = tokio::select! {
                () = cancel.cancelled() => Ok(()),
                () = session.failed() => Err("the session failed".into()),
            };
            self.session.store(None);
            up.set(false);
            served
        })
        .await;
    }

    /// The current session, or `Unavailable` while there is none.
    pub fn session(&self) -> Result<Arc<Session>, PublishError> {
        self.session.load_full().ok_or(PublishError::Unavailable)
    }
}
