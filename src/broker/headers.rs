//! AMQP message headers, both ways: `Headers` builds what herald writes, every
//! value capped (a header over ~128 KiB kills the whole connection), and
//! `read_text` / `read_int` take what a producer or the broker wrote in any
//! string or integer type.

use std::borrow::Cow;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Longest header value herald writes.
pub const MAX_HEADER_BYTES: usize = 1024;

/// The headers of a message herald publishes.
#[derive(Default)]
pub struct Headers(FieldTable);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text header, cut to [`MAX_HEADER_BYTES`] on a character boundary.
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

    /// A copy of `table`, text values capped like those herald writes.
    pub(super) fn copied(table: Option<&FieldTable>) -> Self {
        let mut copy = FieldTable::default();
        for (name, value) in table.into_iter().flat_map(|t| t.inner()) {
            let value = match value {
                AMQPValue::LongString(s) if s.as_bytes().len() > MAX_HEADER_BYTES => {
                    let text = String::from_utf8_lossy(s.as_bytes());
                    AMQPValue::LongString(LongString::from(truncate(&text, MAX_HEADER_BYTES)))
                }
                other => other.clone(),
            };
            copy.insert(name.clone(), value);
        }
        Self(copy)
    }

    pub(super) fn into_table(self) -> FieldTable {
        self.0
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A header as text, whichever string or integer type the producer used.
pub(super) fn read_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    text_value(headers?.inner().get(name)?).map(Cow::into_owned)
}

/// Every header that reads as text (strings, integers, booleans, timestamps).
pub(super) fn text_headers(
    headers: Option<&FieldTable>,
) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    headers
        .into_iter()
        .flat_map(|table| table.inner())
        .filter_map(|(name, value)| Some((name.as_str(), text_value(value)?)))
}

fn text_value(value: &AMQPValue) -> Option<Cow<'_, str>> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Some(Cow::Borrowed(s.as_str())),
        AMQPValue::Boolean(b) => Some(Cow::Owned(b.to_string())),
        // AMQP 0-9-1 timestamps are whole seconds since the epoch.
        AMQPValue::Timestamp(seconds) => {
            let at =
                time::OffsetDateTime::from_unix_timestamp(i64::try_from(*seconds).ok()?).ok()?;
            Some(Cow::Owned(
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()?,
            ))
        }
        other => int_value(other).map(|n| Cow::Owned(n.to_string())),
    }
}

/// A header as an integer, from any integer type or a decimal string.
pub(super) fn read_int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        other => int_value(other),
    }
}

fn int_value(value: &AMQPValue) -> Option<i64> {
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
        let table = Headers::new()
            .text("x-herald-last-error", &long)
            .into_table();
        let read = read_text(Some(&table), "x-herald-last-error").unwrap();
        assert_eq!(read.len(), MAX_HEADER_BYTES);
    }

    #[test]
    fn text_headers_read_strings_numbers_booleans_and_timestamps() {
        let mut table = FieldTable::default();
        table.insert("s".into(), AMQPValue::LongString("x".into()));
        table.insert("n".into(), AMQPValue::ShortInt(-2));
        table.insert("b".into(), AMQPValue::Boolean(true));
        table.insert("t".into(), AMQPValue::Timestamp(1_700_000_000));
        table.insert("f".into(), AMQPValue::FieldTable(FieldTable::default()));
        let read: Vec<(&str, String)> = text_headers(Some(&table))
            .map(|(name, value)| (name, value.into_owned()))
            .collect();
        assert_eq!(
            read,
            [
                ("b", "true".to_owned()),
                ("n", "-2".to_owned()),
                ("s", "x".to_owned()),
                ("t", "2023-11-14T22:13:20Z".to_owned()),
            ]
        );
    }

    #[test]
    fn integers_are_read_from_any_integer_or_string_type() {
        let mut table = FieldTable::default();
        table.insert("a".into(), AMQPValue::LongInt(3));
        table.insert("b".into(), AMQPValue::LongString("7".into()));
        assert_eq!(read_int(Some(&table), "a"), Some(3));
        assert_eq!(read_int(Some(&table), "b"), Some(7));
        assert_eq!(read_int(Some(&table), "c"), None);
    }
}
