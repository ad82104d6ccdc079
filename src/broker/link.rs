//! A publishing session kept open for the API: `POST /v1/events` asks for the
//! current publisher and gets `Unavailable` (503) while the broker is away.
//! The link reconnects with backoff until the app is cancelled.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    connectivity::SessionUp,
    publisher::{PublishError, Publisher},
    reconnect::keep_session,
    session::{Session, SessionSpec},
    topology::Topology,
};
use crate::config::AmqpConfig;

#[derive(Default)]
pub struct Link {
    /// The open session's publisher; `None` while the broker is away.
    publisher: ArcSwapOption<Publisher>,
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
            consume: false,
        };
        let up = &up;
        keep_session(config, spec, cancel, |session: Arc<Session>| async move {
            info!("api connected to the broker");
            let publisher = Arc::new(session.publisher().clone());
            self.publisher.store(Some(publisher));
            up.set(true);
            let served = tokio::select! {
                () = cancel.cancelled() => Ok(()),
                () = session.failed() => Err("the session failed".into()),
            };
            self.publisher.store(None);
            up.set(false);
            served
        })
        .await;
    }

    /// The current session's publisher, or `Unavailable` while there is none.
    pub fn publisher(&self) -> Result<Arc<Publisher>, PublishError> {
        self.publisher.load_full().ok_or(PublishError::Unavailable)
    }
}
