//! A publishing session kept open for the API: `POST /v1/events` asks for the
//! current publisher and gets `Unavailable` (503) while the broker is away.
//! The link reconnects with backoff until the app is cancelled.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    publisher::{PublishError, Publisher},
    session::{Session, reconnect_backoff},
    topology::Topology,
};
use crate::config::AmqpConfig;

#[derive(Default)]
pub struct Link {
    session: ArcSwapOption<Session>,
}

impl Link {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a session open until `cancel`, declaring `topology` when given;
    /// `on_change` hears every connect and disconnect.
    pub async fn run(
        &self,
        config: &AmqpConfig,
        topology: Option<&Topology>,
        cancel: &CancellationToken,
        on_change: impl Fn(bool),
    ) {
        let mut delays = reconnect_backoff();
        while !cancel.is_cancelled() {
            let opened = tokio::select! {
                () = cancel.cancelled() => break,
                opened = Session::open(config, topology, "api", false) => opened,
            };
            match opened {
                Ok(session) => {
                    info!("api connected to the broker");
                    delays = reconnect_backoff();
                    let session = Arc::new(session);
                    self.session.store(Some(session.clone()));
                    on_change(true);
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = session.fault().cancelled() => warn!("api broker session lost, reconnecting"),
                    }
                    self.session.store(None);
                    on_change(false);
                    session.close().await;
                }
                Err(err) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    warn!(
                        error = format!("{err:#}"),
                        delay_ms = delay.as_millis() as u64,
                        "api cannot reach the broker, retrying"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    pub fn publisher(&self) -> Result<(Publisher, CancellationToken), PublishError> {
        let guard = self.session.load();
        let session = guard.as_ref().ok_or(PublishError::Unavailable)?;
        Ok((session.publisher().clone(), session.fault().clone()))
    }

    pub fn is_connected(&self) -> bool {
        self.session.load().is_some()
    }
}
