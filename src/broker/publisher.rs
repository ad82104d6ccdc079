//! Publishing with the guarantee herald's acks rely on: every publish is
//! `mandatory` and confirmed. Published means the confirm is an ack *and* no
//! message came back; anything else is a `PublishError` and the input stays unacked.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

/// Longest header value herald writes: a header over ~128 KiB kills the whole connection.
pub const MAX_HEADER_BYTES: usize = 1024;

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
    pub fn needs_new_session(&self) -> bool {
        matches!(
            self,
            Self::Unroutable { .. } | Self::Amqp { .. } | Self::Unavailable
        )
    }
}

/// A confirm-mode channel on the publishing connection.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
    blocked: Arc<AtomicBool>,
}

impl Publisher {
    /// `channel` must already be in confirm mode; `blocked` follows the
    /// connection's `connection.blocked` / `connection.unblocked` notices.
    pub fn new(channel: Channel, confirm_timeout: Duration, blocked: Arc<AtomicBool>) -> Self {
        Self {
            channel,
            confirm_timeout,
            blocked,
        }
    }

    /// True while the broker blocks this connection (a memory or disk alarm):
    /// a publish now waits out its confirm timeout, so callers that have
    /// another way forward should take it.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Publishes a persistent JSON message and waits for its confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let target = || {
            if exchange.is_empty() {
                routing_key.to_owned()
            } else {
                format!("{exchange}/{routing_key}")
            }
        };
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_headers(headers);
        let confirm = async {
            self.channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
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
                target: target(),
                timeout: self.confirm_timeout,
            })?
            .map_err(|source| PublishError::Amqp {
                target: target(),
                source,
            })?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            // A mandatory publish with no route is acked *and* returned.
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable { target: target() }),
            Confirmation::Nack(_) => Err(PublishError::Nacked { target: target() }),
            Confirmation::NotRequested => Err(PublishError::Unconfirmed { target: target() }),
        }
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// Builds AMQP headers, capping every value at `MAX_HEADER_BYTES`.
#[derive(Default)]
pub struct Headers(FieldTable);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.0.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(truncate(value, MAX_HEADER_BYTES))),
        );
        self
    }

    pub fn int(mut self, name: &str, value: i64) -> Self {
        self.0
            .insert(ShortString::from(name), AMQPValue::LongLongInt(value));
        self
    }

    pub fn build(self) -> FieldTable {
        self.0
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads a header as text, whichever string or integer type the producer used.
pub fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => header_int_value(other).map(|n| n.to_string()),
    }
}

/// Reads a header as an integer, accepting any integer type or a decimal string.
pub fn header_int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        other => header_int_value(other),
    }
}

fn header_int_value(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn header_values_are_capped() {
        let long = "x".repeat(5000);
        let table = Headers::new().text("x-herald-last-error", &long).build();
        assert_eq!(
            header_text(Some(&table), "x-herald-last-error")
                .unwrap()
                .len(),
            MAX_HEADER_BYTES
        );
    }

    #[test]
    fn integers_are_read_from_any_integer_or_string_type() {
        let mut table = FieldTable::default();
        table.insert("a".into(), AMQPValue::LongInt(3));
        table.insert("b".into(), AMQPValue::LongString("7".into()));
        assert_eq!(header_int(Some(&table), "a"), Some(3));
        assert_eq!(header_int(Some(&table), "b"), Some(7));
        assert_eq!(header_int(Some(&table), "c"), None);
    }
}
