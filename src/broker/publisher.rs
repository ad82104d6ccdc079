//! Publishing with the guarantee herald's acks rely on: every publish is
//! `mandatory` and confirmed. Published means the confirm is an ack *and* no
//! message came back; anything else is a `PublishError` and the input stays
//! unacked. A failure that shows the session broken ends the session right
//! there, so no caller has to remember to.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::ShortString,
};
use tokio_util::sync::CancellationToken;

use super::{headers::Headers, stream::stream_arguments};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker nacked a publish to `{target}`")]
    Nacked { target: String },
    #[error("nothing bound to `{target}`: the message came back unroutable")]
    Unroutable { target: String },
    #[error("no confirm for a publish to `{target}` within {timeout:?}: outcome unknown")]
    Timeout { target: String, timeout: Duration },
    #[error("publishing to `{target}`")]
    Amqp {
        target: String,
        #[source]
        source: lapin::Error,
    },
    #[error("publish to `{target}` went out on a channel without confirms")]
    Unconfirmed { target: String },
    #[error("not connected to the broker")]
    Unavailable,
}

impl PublishError {
    /// A missing queue or binding is healed by redeclaring the topology on a new session.
    fn needs_new_session(&self) -> bool {
        matches!(
            self,
            Self::Unroutable { .. } | Self::Amqp { .. } | Self::Unavailable
        )
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// Straight to a queue (the default exchange, routed by the queue's name).
    Queue(&'a str),
    /// To an exchange with a routing key: how producers publish events.
    Exchange { name: &'a str, routing_key: &'a str },
}

impl Destination<'_> {
    fn exchange(&self) -> &str {
        match self {
            Self::Queue(_) => "",
            Self::Exchange { name, .. } => name,
        }
    }

    fn routing_key(&self) -> &str {
        match self {
            Self::Queue(queue) => queue,
            Self::Exchange { routing_key, .. } => routing_key,
        }
    }

    /// How errors name it: the queue, or `exchange/routing key`.
    fn target(&self) -> String {
        match self {
            Self::Queue(queue) => (*queue).to_owned(),
            Self::Exchange { name, routing_key } => format!("{name}/{routing_key}"),
        }
    }
}

/// A confirm-mode channel on the publishing connection of a session.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
    /// Follows the connection's `connection.blocked` / `connection.unblocked` notices.
    blocked: Arc<AtomicBool>,
    /// The session's fault token.
    fault: CancellationToken,
}

impl Publisher {
    /// `channel` must already be in confirm mode.
    pub(super) fn new(
        channel: Channel,
        confirm_timeout: Duration,
        blocked: Arc<AtomicBool>,
        fault: CancellationToken,
    ) -> Self {
        Self {
            channel,
            confirm_timeout,
            blocked,
            fault,
        }
    }

    /// True while the broker blocks this connection (a memory or disk alarm):
    /// a publish now waits out its confirm timeout, so callers that have
    /// another way forward should take it.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Declares the stream `name` to publish to, if it is not there yet (the
    /// same arguments every time, so declaring again is harmless).
    pub async fn declare_stream(&self, name: &str) -> Result<(), PublishError> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let declared = self
            .channel
            .queue_declare(ShortString::from(name), durable, stream_arguments())
            .await;
        match declared {
            Ok(_) => Ok(()),
            Err(source) => {
                // A failed declare closes the channel: the session must go.
                self.fault.cancel();
                Err(PublishError::Amqp {
                    target: name.to_owned(),
                    source,
                })
            }
        }
    }

    /// Publishes a persistent JSON message and waits for its confirm. A failure
    /// that needs a new session (a queue or binding gone, the channel closed)
    /// trips the session's fault token: its owner opens a new one.
    pub async fn publish(
        &self,
        to: Destination<'_>,
        body: &[u8],
        headers: Headers,
    ) -> Result<(), PublishError> {
        let published = self.publish_confirmed(to, body, headers).await;
        if let Err(err) = &published
            && err.needs_new_session()
        {
            self.fault.cancel();
        }
        published
    }

    async fn publish_confirmed(
        &self,
        to: Destination<'_>,
        body: &[u8],
        headers: Headers,
    ) -> Result<(), PublishError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_headers(headers.into_table());
        let confirm = async {
            self.channel
                .basic_publish(
                    ShortString::from(to.exchange()),
                    ShortString::from(to.routing_key()),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| PublishError::Timeout {
                target: to.target(),
                timeout: self.confirm_timeout,
            })?
            .map_err(|source| PublishError::Amqp {
                target: to.target(),
                source,
            })?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            // A mandatory publish with no route is acked *and* returned.
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
                target: to.target(),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked {
                target: to.target(),
            }),
            Confirmation::NotRequested => Err(PublishError::Unconfirmed {
                target: to.target(),
            }),
        }
    }
}
