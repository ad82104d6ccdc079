//! RabbitMQ streams, read without taking anything off them (the dead-letter
//! log lives in two). A reader starts at an offset, acks only so the broker
//! keeps sending, and ends once the stream has had nothing more for `IDLE`:
//! over AMQP 0.9.1 a stream has no end-of-stream signal, and a queue declare
//! reports no message count for one.

use std::time::Duration;

use backon::{ConstantBuilder, Retryable as _};
use futures_util::StreamExt;
use lapin::{
    Connection,
    options::{BasicAckOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};

use tracing::debug;

use super::{
    consumer::Message,
    session::{Session, consume_on},
};

/// How long a stream may stay silent before a reader takes it as read to the end.
pub const IDLE: Duration = Duration::from_millis(250);
/// Entries the broker sends ahead of the reader.
const PREFETCH: u16 = 500;
/// How often, and how far apart, a stream that is not ready is asked again.
const NOT_READY_TRIES: usize = 10;
const NOT_READY_DELAY: Duration = Duration::from_millis(300);

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

/// Reads one stream on a connection of its own. RabbitMQ answers a consumer of
/// a stream that is not ready yet (just declared, or its leader moving) with a
/// connection-level error: on the session's connections that would end the
/// session, and with it every publish of the API or worker on it.
pub struct StreamReader {
    /// Closed by [`StreamReader::close`], or on drop.
    connection: Option<Connection>,
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
        let open = || async {
            let connection = self.detached_connection("herald stream reader").await?;
            let mut args = FieldTable::default();
            let offset = i64::try_from(offset).unwrap_or(i64::MAX);
            args.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset));
            match consume_on(&connection, stream, PREFETCH, args).await {
                Ok((_, consumer)) => Ok(StreamReader {
                    connection: Some(connection),
                    consumer,
                }),
                Err(err) => {
                    close(connection).await;
                    Err(err)
                }
            }
        };
        let ready_soon = ConstantBuilder::default()
            .with_delay(NOT_READY_DELAY)
            .with_max_times(NOT_READY_TRIES);
        let reader = open
            .retry(ready_soon)
            .notify(|err, _| {
                debug!(
                    stream,
                    error = format!("{err:#}"),
                    "stream not ready, trying again"
                )
            })
            .await?;
        Ok(Some(reader))
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
    pub async fn close(mut self) {
        if let Some(connection) = self.connection.take() {
            close(connection).await;
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // Left on an error half-way: the connection still goes.
        if let Some(connection) = self.connection.take() {
            tokio::spawn(close(connection));
        }
    }
}

async fn close(connection: Connection) {
    let _ = connection.close(200, ShortString::from("read")).await;
}
