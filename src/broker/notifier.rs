//! Best-effort publishing, for announcements no delivery may wait on (outcome
//! events): a channel of its own on the session's publishing connection, no
//! confirms, not mandatory (nobody bound to the exchange is not an error). The
//! broker says a message could not be taken (a missing exchange) by closing the
//! channel: the next send finds it closed and fails, and the one after opens a
//! new channel.

use std::sync::Arc;

use lapin::{BasicProperties, Channel, options::BasicPublishOptions, types::ShortString};

use super::session::Session;

pub struct Notifier {
    session: Arc<Session>,
    channel: Option<Channel>,
}

impl Notifier {
    pub fn new(session: Arc<Session>) -> Self {
        Self {
            session,
            channel: None,
        }
    }

    /// Hands one message to the broker and returns; nothing waits for an answer.
    pub async fn send(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> anyhow::Result<()> {
        let channel = match self.channel.take() {
            Some(channel) if channel.status().connected() => self.channel.insert(channel),
            Some(_) => anyhow::bail!("the broker closed the channel: it could not take a message"),
            None => self.channel.insert(self.session.channel().await?),
        };
        let properties =
            BasicProperties::default().with_content_type(ShortString::from("application/json"));
        let sent = channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await;
        if sent.is_err() {
            // A publish to a missing exchange closes the channel; start over next time.
            self.channel = None;
        }
        sent?;
        Ok(())
    }
}
