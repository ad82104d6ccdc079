//! The event envelope (DESIGN, "Event envelope"): decoded and validated once
//! at the edge (AMQP fan-out or `POST /v1/events`), normalised (id and time
//! filled in), and serialised to the canonical JSON that delivery tasks carry
//! and the `json` format sends. Matching, rendering and delivery read it.
//! An object with `specversion` is a CloudEvent and maps on to it (`cloudevents`).

pub mod cloudevents;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::ToSchema;

use crate::field_error::FieldError;

/// A valid event. Past `decode`, every field obeys DESIGN's envelope rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub labels: BTreeMap<String, String>,
    /// Kept as raw JSON: herald passes it through and never needs its structure.
    pub data: Option<Box<RawValue>>,
}

/// What a producer may send; everything optional so each rule can name its
/// field. Its schema is the envelope of the OpenAPI document.
#[derive(Deserialize, ToSchema)]
#[schema(
    as = Event,
    description = "An event envelope.",
    example = json!({"type": "deployment.failed", "source": "ci",
                     "labels": {"environment": "production"}, "data": {"build": 42}})
)]
pub struct Wire {
    /// Becomes `webhook-id`; a UUIDv7 when absent.
    #[schema(pattern = "^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)]
    id: Option<String>,
    /// Dot-separated segments of `a-z0-9_-`, e.g. `deployment.failed`.
    #[serde(rename = "type")]
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$",
        min_length = 1,
        max_length = 128
    )]
    event_type: Option<String>,
    /// Who produced it.
    source: Option<String>,
    /// RFC 3339; the ingest time when absent.
    #[schema(format = DateTime)]
    time: Option<String>,
    /// What subscription selectors match.
    labels: Option<BTreeMap<String, String>>,
    /// The payload, any JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    data: Option<Box<RawValue>>,
    /// `true`: deliver to no subscription.
    webhooks_disabled: Option<bool>,
    /// Present: the object is a structured-mode CloudEvent, read by `cloudevents`
    /// (the document shows those as `CloudEvent`).
    #[schema(ignore)]
    specversion: Option<serde::de::IgnoredAny>,
}

/// The outcome of decoding: the event and whether the producer opted out of webhooks.
#[derive(Debug)]
pub struct Decoded {
    pub event: Event,
    pub webhooks_disabled: bool,
}

/// Decodes and validates one envelope from JSON text. A body that is not a
/// JSON object at all is an error of the field `body`.
pub fn decode(body: &[u8]) -> Result<Decoded, FieldError> {
    // serde would also read a struct from a JSON array; an envelope is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(FieldError::new("body", "an event must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let wire: Result<Wire, _> = serde_path_to_error::deserialize(&mut de);
    let wire = match wire {
        Ok(wire) if wire.specversion.is_some() => return structured_cloudevent(body),
        Ok(wire) => wire,
        Err(err) => {
            let inner = err.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(FieldError::new(
                    "body",
                    format!("not a JSON object: {inner}"),
                ));
            }
            // A CloudEvent may carry an extension herald's envelope reads otherwise
            // (`labels: "x"`): it is judged by the CloudEvents rules.
            return match serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(body) {
                Ok(members) if members.contains_key("specversion") => cloudevent(members),
                _ => Err(FieldError::from_serde(err)),
            };
        }
    };
    de.end()
        .map_err(|err| FieldError::new("body", format!("trailing characters: {err}")))?;
    validate(wire)
}

/// Decodes from an already parsed JSON value (one element of a `POST /v1/events` batch).
pub fn decode_value(value: &serde_json::Value) -> Result<Decoded, FieldError> {
    if !value.is_object() {
        return Err(FieldError::new("body", "an event must be a JSON object"));
    }
    if is_cloudevent(value) {
        let members = BTreeMap::<String, Box<RawValue>>::deserialize(value)
            .map_err(|err| FieldError::new("body", err))?;
        return cloudevent(members);
    }
    let wire: Wire = serde_path_to_error::deserialize(value).map_err(FieldError::from_serde)?;
    validate(wire)
}

/// Whether a JSON value is a structured-mode CloudEvent (it has `specversion`).
pub fn is_cloudevent(value: &serde_json::Value) -> bool {
    value.get("specversion").is_some()
}

fn structured_cloudevent(body: &[u8]) -> Result<Decoded, FieldError> {
    let members = serde_json::from_slice(body)
        .map_err(|err| FieldError::new("body", format!("not a JSON object: {err}")))?;
    cloudevent(members)
}

fn cloudevent(members: BTreeMap<String, Box<RawValue>>) -> Result<Decoded, FieldError> {
    Ok(Decoded {
        event: cloudevents::structured(members)?,
        webhooks_disabled: false,
    })
}

fn validate(wire: Wire) -> Result<Decoded, FieldError> {
    let event_type = wire
        .event_type
        .ok_or_else(|| FieldError::required("type"))?;
    check_type(&event_type).map_err(|m| FieldError::new("type", m))?;
    let id = match wire.id {
        Some(id) => {
            check_id(&id).map_err(|m| FieldError::new("id", m))?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let time = match wire.time {
        Some(t) => parse_time("time", &t)?,
        None => OffsetDateTime::now_utc(),
    };
    Ok(Decoded {
        event: Event {
            id,
            event_type,
            source: wire.source,
            time,
            labels: wire.labels.unwrap_or_default(),
            data: wire.data,
        },
        webhooks_disabled: wire.webhooks_disabled.unwrap_or(false),
    })
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, FieldError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| FieldError::new(field, format!("{text:?} is not an RFC 3339 time")))
}

/// 1-128 characters, dot-separated non-empty segments of `a-z0-9_-`.
pub fn check_type(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 128 {
        return Err(format!("must be 1-128 characters, not {}", t.len()));
    }
    for segment in t.split('.') {
        if segment.is_empty() {
            return Err(format!("{t:?} has an empty segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "{t:?} has {c:?}: segments are a-z, 0-9, '_' and '-', separated by dots"
            ));
        }
    }
    Ok(())
}

/// 1-128 of `A-Za-z0-9._:-`: it becomes the `webhook-id` header.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!("must be 1-128 characters, not {}", id.len()));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(format!(
            "has {c:?}: allowed are A-Z, a-z, 0-9, '.', '_', ':' and '-'"
        )),
        None => Ok(()),
    }
}

impl Event {
    /// The canonical JSON: `{id, type, source, time, labels, data}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec(self).expect("an Event always serialises");
        // serde_json grows the buffer by doubling: up to half of it would be spare
        // capacity, held by every delivery of the event for as long as it lasts.
        json.shrink_to_fit();
        json
    }

    /// Parses canonical JSON written by `to_json` (a delivery task's body).
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// `event.time` as RFC 3339.
    pub fn time_rfc3339(&self) -> String {
        self.time
            .format(&Rfc3339)
            .expect("an OffsetDateTime from RFC 3339 or now formats as RFC 3339")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> FieldError {
        decode(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_minimal_event_gets_an_id_and_a_time() {
        let d = decode(br#"{"type":"deployment.failed"}"#).unwrap();
        assert_eq!(d.event.event_type, "deployment.failed");
        assert_eq!(
            uuid::Uuid::parse_str(&d.event.id)
                .unwrap()
                .get_version_num(),
            7
        );
        assert!(!d.webhooks_disabled);
    }

    #[test]
    fn every_field_is_kept() {
        let d = decode(
            br#"{"id":"evt-1","type":"testworkflow.end.success","source":"ci","time":"2026-01-02T03:04:05+01:00",
                "labels":{"env":"prod"},"data":{"n":[1,2]},"webhooks_disabled":true}"#,
        )
        .unwrap();
        assert_eq!(d.event.id, "evt-1");
        assert_eq!(d.event.source.as_deref(), Some("ci"));
        assert_eq!(d.event.labels["env"], "prod");
        assert_eq!(d.event.data.as_ref().unwrap().get(), r#"{"n":[1,2]}"#);
        assert!(d.webhooks_disabled);
        let json: serde_json::Value = serde_json::from_slice(&d.event.to_json()).unwrap();
        assert_eq!(json["time"], "2026-01-02T03:04:05+01:00");
        assert_eq!(json["type"], "testworkflow.end.success");
        assert!(json.get("webhooks_disabled").is_none());
    }

    #[test]
    fn the_canonical_json_round_trips() {
        let d = decode(br#"{"type":"a.b","data":[1,{"x":null}]}"#).unwrap();
        let again = Event::from_json(&d.event.to_json()).unwrap();
        assert_eq!(again.id, d.event.id);
        assert_eq!(again.time, d.event.time);
        assert_eq!(again.data.unwrap().get(), r#"[1,{"x":null}]"#);
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(err(r#"{}"#).field, "type");
        assert_eq!(err(r#"{"type":""}"#).field, "type");
        assert_eq!(err(r#"{"type":"Deployment.Failed"}"#).field, "type");
        assert_eq!(err(r#"{"type":"a..b"}"#).field, "type");
        assert_eq!(err(r#"{"type":5}"#).field, "type");
        assert_eq!(err(r#"{"type":"a","id":"has space"}"#).field, "id");
        assert_eq!(err(r#"{"type":"a","time":"yesterday"}"#).field, "time");
        assert_eq!(err(r#"{"type":"a","labels":{"k":1}}"#).field, "labels.k");
        assert_eq!(
            err(r#"{"type":"a","webhooks_disabled":"yes"}"#).field,
            "webhooks_disabled"
        );
        assert_eq!(
            err(&format!(r#"{{"type":"{}"}}"#, "a".repeat(129))).field,
            "type"
        );
    }

    #[test]
    fn non_json_is_a_body_error() {
        assert_eq!(err("not json").field, "body");
        assert_eq!(err("[1,2]").field, "body");
        assert_eq!(err(r#"{"type":"a"} trailing"#).field, "body");
        assert_eq!(err("").field, "body");
    }

    #[test]
    fn messages_carry_no_parser_positions() {
        let e = err(r#"{"type":5}"#);
        assert!(!e.message.contains("line"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn valid_types_are_accepted(t in "[a-z0-9_-]{1,20}(\\.[a-z0-9_-]{1,20}){0,4}") {
            proptest::prop_assert!(check_type(&t).is_ok());
        }
    }
}
