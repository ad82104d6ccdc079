//! CloudEvents 1.0 out (`format: cloudevents`), in either HTTP content mode:
//! structured (the whole event as `application/cloudevents+json`) or binary
//! (the attributes in `ce-*` headers, the data as the body). Signed like every
//! format, over the body as sent.
//!
//! The event's `id`, `type`, `time` and `data` map across; `source` is the
//! event's, or `herald` when it has none (the spec requires one). The label
//! `subject` becomes `subject`, and every other label whose name is a valid
//! attribute name (lowercase a-z and 0-9, not one of the spec's own) becomes an
//! extension attribute: a CloudEvent that came in leaves with its attributes.
//! Other labels (`app.kubernetes.io/name`) have no place in a CloudEvent and
//! are left out.

use std::collections::BTreeMap;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{
    Event,
    cloudevents::{CORE_ATTRIBUTES, SPECVERSION, is_attribute_name},
};

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
const DATA_CONTENT_TYPE: &str = "application/json";
/// The `source` of an event that names none.
const DEFAULT_SOURCE: &str = "herald";

/// The HTTP binding percent-encodes space, `"`, `%` and everything outside
/// printable ASCII in header values (`CONTROLS` covers the rest of the range).
const HEADER_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// The event's attributes as CloudEvents sees them.
#[derive(Serialize)]
struct Attributes<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'static str>,
    #[serde(flatten)]
    extensions: BTreeMap<&'a str, &'a str>,
}

impl<'a> Attributes<'a> {
    fn of(event: &'a Event) -> Self {
        Self {
            specversion: SPECVERSION,
            id: &event.id,
            source: event.source.as_deref().unwrap_or(DEFAULT_SOURCE),
            event_type: &event.event_type,
            time: event.time_rfc3339(),
            subject: event.labels.get("subject").map(String::as_str),
            datacontenttype: event.data.as_ref().map(|_| DATA_CONTENT_TYPE),
            extensions: event
                .labels
                .iter()
                .filter(|(name, _)| is_extension_name(name))
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect(),
        }
    }
}

/// A label name that is a valid extension attribute name of its own (no label
/// may pose as one of the spec's attributes).
fn is_extension_name(name: &str) -> bool {
    is_attribute_name(name) && !CORE_ATTRIBUTES.contains(&name)
}

/// Structured mode: the body of an `application/cloudevents+json` request.
pub fn structured(event: &Event) -> Bytes {
    #[derive(Serialize)]
    struct Structured<'a> {
        #[serde(flatten)]
        attributes: Attributes<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
    }
    let body = Structured {
        attributes: Attributes::of(event),
        data: event.data.as_deref(),
    };
    Bytes::from(serde_json::to_vec(&body).expect("CloudEvent attributes always serialise"))
}

/// Binary mode: the `ce-*` headers, and the data (empty without data) as the
/// `application/json` body.
pub fn binary(event: &Event) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
    let attributes = Attributes::of(event);
    let mut headers = Vec::with_capacity(6 + attributes.extensions.len());
    let mut add = |name: &str, value: &str| {
        let encoded = utf8_percent_encode(value, HEADER_ESCAPES).to_string();
        // Both are ASCII by construction: the names are attribute names, the
        // values percent-encoded.
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("ce-{name}")),
            HeaderValue::try_from(encoded),
        ) {
            headers.push((name, value));
        }
    };
    add("specversion", attributes.specversion);
    add("id", attributes.id);
    add("source", attributes.source);
    add("type", attributes.event_type);
    add("time", &attributes.time);
    if let Some(subject) = attributes.subject {
        add("subject", subject);
    }
    for (name, value) in &attributes.extensions {
        add(name, value);
    }
    let body = event.data.as_ref().map_or_else(Bytes::new, |data| {
        Bytes::copy_from_slice(data.get().as_bytes())
    });
    (headers, body)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::event::decode;

    fn event(json: Value) -> Event {
        decode(json.to_string().as_bytes()).unwrap().event
    }

    #[test]
    fn structured_mode_carries_attributes_labels_and_the_data_as_is() {
        let e = event(json!({"id": "e-1", "type": "deploy.done", "source": "ci",
            "time": "2026-01-02T03:04:05Z",
            "labels": {"subject": "svc/api", "team": "core", "app.kubernetes.io/name": "x", "id": "no"},
            "data": {"z": 1, "a": 2}}));
        let body: Value = serde_json::from_slice(&structured(&e)).unwrap();
        assert_eq!(
            body,
            json!({"specversion": "1.0", "id": "e-1", "source": "ci", "type": "deploy.done",
                "time": "2026-01-02T03:04:05Z", "subject": "svc/api", "team": "core",
                "datacontenttype": "application/json", "data": {"z": 1, "a": 2}})
        );
    }

    #[test]
    fn an_event_without_source_or_data_is_still_a_valid_cloudevent() {
        let body: Value =
            serde_json::from_slice(&structured(&event(json!({"type": "a.b"})))).unwrap();
        assert_eq!(body["source"], "herald");
        assert!(body.get("data").is_none() && body.get("datacontenttype").is_none());
    }

    #[test]
    fn binary_mode_puts_attributes_in_percent_encoded_headers() {
        let e = event(json!({"id": "e-1", "type": "a.b", "source": "ci",
            "time": "2026-01-02T03:04:05Z", "labels": {"subject": "ünïcode \"q\" 100%"},
            "data": [1, 2]}));
        let (headers, body) = binary(&e);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(get("ce-id").as_deref(), Some("e-1"));
        assert_eq!(get("ce-type").as_deref(), Some("a.b"));
        assert_eq!(get("ce-time").as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(
            get("ce-subject").as_deref(),
            Some("%C3%BCn%C3%AFcode%20%22q%22%20100%25")
        );
        assert_eq!(&body[..], b"[1,2]");
    }
}
