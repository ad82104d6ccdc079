//! A publishing session kept open for the API: `POST /v1/events` asks for the
//! current publisher and gets `Unavailable` (503) while the broker is away.
//! The link reconnects with backoff until the app is cancelled.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    connectivity::SessionUp,
    headers::Headers,
    publisher::{Destination, PublishError, Publisher},
    reconnect::keep_session,
    session::{Session, SessionSpec},
    topology::Topology,
};
use crate::config::AmqpConfig;

/// A session's publisher and the token that says the session broke.
struct Open {
    publisher: Publisher,
    fault: CancellationToken,
}

#[derive(Default)]
pub struct Link {
    open: ArcSwapOption<Open>,
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
            self.open.store(Some(Arc::new(Open {
                publisher: session.publisher().clone(),
                fault: session.fault().clone(),
            })));
            up.set(true);
            tokio::select! {
                () = cancel.cancelled() => {}
                () = session.fault().cancelled() => {}
            }
            self.open.store(None);
            up.set(false);
            Err("a connection of the session failed".into())
        })
        .await;
    }

    /// Publishes on the current session; a failure that shows the session
    /// broken (a queue or binding gone) ends it, so the link opens a new one.
    pub async fn publish(
        &self,
        to: Destination<'_>,
        body: &[u8],
        headers: Headers,
    ) -> Result<(), PublishError> {
        let open = self.open.load_full().ok_or(PublishError::Unavailable)?;
        let published = open.publisher.publish(to, body, headers).await;
        if let Err(err) = &published
            && err.needs_new_session()
        {
            open.fault.cancel();
        }
        published
    }
}
