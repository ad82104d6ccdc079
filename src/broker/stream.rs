//! RabbitMQ streams, read without taking anything off them (the dead-letter
//! log lives in two). A reader starts at an offset, acks only so the broker
//! keeps sending, and ends once the stream has had nothing more for `IDLE`:
//! over AMQP 0.9.1 a stream has no end-of-stream signal, and a queue declare
//! reports no message count for one.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};

use super::{consumer::Message, session::Session};

/// How long a stream may stay silent before a reader takes it as read to the end.
pub const IDLE: Duration = Duration::from_millis(250);
/// Entries the broker sends ahead of the reader.
const PREFETCH: u16 = 500;

/// The arguments of a stream: herald keeps everything; retention is the
/// operator's choice, by policy (README, "Dead letters").
pub fn stream_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    args
}

/// An entry of a stream and its offset there.
pub struct Entry {
    pub offset: u64,
    pub message: Message,
}

pub struct StreamReader {
    channel: lapin::Channel,
    consumer: lapin::Consumer,
}

impl Session {
    /// Reads `stream` from `offset` on; `None` when there is no such stream (yet).
    pub async fn read_stream(
        &self,
        stream: &str,
        offset: u64,
    ) -> anyhow::Result<Option<StreamReader>> {
        if !self.queue_exists(stream).await? {
            return Ok(None);
        }
        let mut args = FieldTable::default();
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        args.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset));
        let (channel, consumer) = self.open_consumer(stream, PREFETCH, args).await?;
        Ok(Some(StreamReader { channel, consumer }))
    }

    /// Asked on a channel of its own: a missing queue closes the channel it is asked on.
    async fn queue_exists(&self, queue: &str) -> anyhow::Result<bool> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(ShortString::from(queue), passive, FieldTable::default())
            .await;
        match declared {
            Ok(_) => {
                let _ = channel.close(200, ShortString::from("done")).await;
                Ok(true)
            }
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

fn is_not_found(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

impl StreamReader {
    /// The next entry, or `None` once the stream has been read to its end.
    pub async fn next(&mut self) -> anyhow::Result<Option<Entry>> {
        let next = match tokio::time::timeout(IDLE, self.consumer.next()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(next)) => next?,
        };
        // Acks only return credit: a stream keeps what it is sent.
        next.ack(BasicAckOptions::default()).await?;
        let (message, _) = Message::from_delivery(next);
        let offset = message
            .header_int("x-stream-offset")
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("a stream entry without its x-stream-offset"))?;
        Ok(Some(Entry { offset, message }))
    }

    /// Stops reading; the stream keeps everything.
    pub async fn close(self) {
        let _ = self.channel.close(200, ShortString::from("read")).await;
    }
}
