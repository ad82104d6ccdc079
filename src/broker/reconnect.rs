//! The one reconnect loop, shared by the worker and the API's publishing link:
//! open a session (retrying with backoff while the broker is away), let the
//! owner use it until it fails, close it, and open the next. Delays come from
//! `backon`: fast first, capped, jittered so a fleet does not stampede a
//! restarted broker, and back to the shortest once a session opened.

use std::{future::Future, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::session::{Session, SessionSpec};
use crate::config::AmqpConfig;

/// Keeps a session as `spec` says open until `cancel`. `serve` uses each one and
/// returns when it is done: `Err` says why the session failed.
pub async fn keep_session<F, Served>(
    config: &AmqpConfig,
    spec: SessionSpec<'_>,
    cancel: &CancellationToken,
    mut serve: F,
) where
    F: FnMut(Arc<Session>) -> Served,
    Served: Future<Output = Result<(), String>>,
{
    let mut delays = backoff();
    loop {
        let opened = tokio::select! {
            () = cancel.cancelled() => return,
            opened = Session::open(config, spec) => opened,
        };
        match opened {
            Ok(session) => {
                delays = backoff();
                let session = Arc::new(session);
                let served = serve(session.clone()).await;
                session.close().await;
                if cancel.is_cancelled() {
                    return;
                }
                if let Err(reason) = served {
                    warn!(
                        session = spec.name,
                        reason, "broker session lost, reconnecting"
                    );
                }
            }
            Err(err) => warn!(
                session = spec.name,
                error = format!("{err:#}"),
                "cannot reach the broker, retrying"
            ),
        }
        let delay = delays.next().unwrap_or(MAX_DELAY);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}
