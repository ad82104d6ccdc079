//! CloudEvents 1.0 in: a structured-mode event (a JSON object with
//! `specversion`, on either ingest path) or a binary-mode AMQP message (the
//! attributes in headers, the data as the body) becomes a herald event.
//!
//! - `id` stays when herald's id rules allow it (it becomes `webhook-id`);
//!   otherwise it is `ce-` and 32 hex digits of SHA-256(source, id), so one
//!   CloudEvent always gets the same id and receivers still deduplicate.
//! - `type` is lowercased and every character outside `a-z0-9_-.` becomes `-`
//!   (`com.Example.Order/Created` -> `com.example.order-created`); one that is
//!   still no herald type (an empty segment, over 128) is refused. Subscription
//!   patterns are lowercased too, so `com.example.*` matches it.
//! - `source`, `time` and `data` map across; `data_base64` becomes `data` as
//!   that base64 text, so nothing is decoded or lost.
//! - `subject` and every extension attribute become labels under their own
//!   names (numbers and booleans as their JSON text), so selectors match them.
//! - `datacontenttype` and `dataschema` describe the data and are not kept.

use std::{borrow::Cow, collections::BTreeMap};

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{Event, check_id, check_type, parse_time};
use crate::field_error::FieldError;

pub const SPECVERSION: &str = "1.0";

/// Context attributes of the spec itself: everything else is an extension.
pub const CORE_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Header prefixes of binary mode: the AMQP binding's `cloudEvents:` (and its
/// `cloudEvents_` for clients that refuse a colon), and HTTP's `ce-` (with `ce_`)
/// as bridges copy them.
const HEADER_PREFIXES: [&str; 4] = ["cloudEvents:", "cloudEvents_", "ce-", "ce_"];

/// A structured-mode CloudEvent as the OpenAPI document shows it;
/// [`structured`] reads one from its members.
#[derive(ToSchema)]
#[schema(
    as = CloudEvent,
    description = "A CloudEvents 1.0 event in structured mode; `subject` and extension attributes become labels.",
    example = json!({"specversion": "1.0", "id": "A234-1234-1234", "source": "/shop/orders",
                     "type": "com.example.order.created", "subject": "order/42", "tenant": "acme",
                     "datacontenttype": "application/json", "data": {"total": 12.5}})
)]
#[allow(dead_code)] // describes the body
pub struct StructuredSchema {
    #[schema(pattern = "^1\\.0$")]
    specversion: String,
    #[schema(min_length = 1)]
    id: String,
    #[schema(min_length = 1)]
    source: String,
    /// Lowercased, characters outside `a-z0-9_-.` replaced by `-`.
    #[schema(rename = "type", min_length = 1)]
    event_type: String,
    #[schema(format = DateTime)]
    time: Option<String>,
    subject: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    /// The payload, any JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    data: Option<Box<RawValue>>,
    /// Binary data, kept as this base64 text.
    data_base64: Option<String>,
    /// Extension attributes: lowercase `a-z0-9` names, string, number or boolean values.
    #[serde(flatten)]
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    extensions: BTreeMap<String, Box<RawValue>>,
}

/// A structured-mode event: `attributes` are its top-level members, unparsed.
pub(super) fn structured(
    mut attributes: BTreeMap<String, Box<RawValue>>,
) -> Result<Event, FieldError> {
    let mut text = |name: &str| -> Result<Option<String>, FieldError> {
        match attributes.remove(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|_| FieldError::new(name, "must be a string")),
        }
    };
    let specversion = text("specversion")?;
    let core = Core {
        id: text("id")?,
        source: text("source")?,
        event_type: text("type")?,
        time: text("time")?,
        subject: text("subject")?,
    };
    // Checked for shape, then dropped: herald's data is JSON, as the event's JSON carries it.
    text("datacontenttype")?;
    text("dataschema")?;
    let base64 = text("data_base64")?;
    let data = attributes.remove("data").filter(|raw| raw.get() != "null");
    let data = match (data, base64) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "data_base64",
                "an event carries data or data_base64, not both",
            ));
        }
        (Some(data), None) => Some(data),
        (None, Some(base64)) => Some(json_string(&base64)),
        (None, None) => None,
    };
    let mut labels = BTreeMap::new();
    for (name, raw) in attributes {
        if let Some(value) = extension_value(&name, raw.get())? {
            labels.insert(name, value);
        }
    }
    core.into_event(specversion, labels, data)
}

/// A binary-mode message, from its text headers, content type and body;
/// `None` when no header carries a CloudEvents `specversion`, so it is no CloudEvent.
pub fn binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, Cow<'a, str>)>,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Result<Event, FieldError>> {
    let mut attributes: BTreeMap<String, String> = headers
        .into_iter()
        .filter_map(|(name, value)| {
            let attribute = HEADER_PREFIXES
                .iter()
                .find_map(|prefix| strip_prefix_ignoring_case(name, prefix))?;
            Some((attribute.to_ascii_lowercase(), value.into_owned()))
        })
        .collect();
    let specversion = attributes.remove("specversion")?;
    Some(binary_event(specversion, attributes, content_type, body))
}

fn binary_event(
    specversion: String,
    mut attributes: BTreeMap<String, String>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, FieldError> {
    let time = attributes.remove("time").map(amqp_timestamp).transpose()?;
    let core = Core {
        id: attributes.remove("id"),
        source: attributes.remove("source"),
        event_type: attributes.remove("type"),
        time,
        subject: attributes.remove("subject"),
    };
    let content_type = content_type.or(attributes.get("datacontenttype").map(String::as_str));
    let data = binary_data(content_type, body)?;
    let mut labels = BTreeMap::new();
    for (name, value) in attributes {
        if CORE_ATTRIBUTES.contains(&name.as_str()) {
            continue;
        }
        check_extension_name(&name)?;
        labels.insert(name, value);
    }
    core.into_event(Some(specversion), labels, data)
}

/// The AMQP 1.0 binding sends `time` as an AMQP timestamp, which reaches an
/// AMQP 0-9-1 consumer as an integer of milliseconds since the epoch; text stays.
fn amqp_timestamp(time: String) -> Result<String, FieldError> {
    let Ok(millis) = time.parse::<i64>() else {
        return Ok(time);
    };
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| FieldError::new("time", format!("{millis} ms is out of range")))?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|err| FieldError::new("time", err))
}

/// The body of a binary-mode message as herald's JSON `data`: JSON as it is
/// (refused when it claims to be JSON and is not), other text as a JSON string,
/// other bytes as a base64 string. With no content type, JSON when it parses.
fn binary_data(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Box<RawValue>>, FieldError> {
    if body.is_empty() {
        return Ok(None);
    }
    let parsed = || serde_json::from_slice::<Box<RawValue>>(body);
    match content_type {
        Some(ct) if is_json(ct) => parsed().map(Some).map_err(|err| {
            FieldError::new(
                "data",
                format!("the content type is {ct} but the body is not JSON: {err}"),
            )
        }),
        None if parsed().is_ok() => Ok(parsed().ok()),
        _ => Ok(Some(match std::str::from_utf8(body) {
            Ok(text) => json_string(text),
            Err(_) => {
                use base64::Engine;
                json_string(&base64::engine::general_purpose::STANDARD.encode(body))
            }
        })),
    }
}

/// `application/json`, `text/json` and any `+json` type, parameters aside.
fn is_json(content_type: &str) -> bool {
    content_type
        .parse::<mime::Mime>()
        .is_ok_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

/// The core attributes herald maps, as the producer sent them.
struct Core {
    id: Option<String>,
    source: Option<String>,
    event_type: Option<String>,
    time: Option<String>,
    subject: Option<String>,
}

impl Core {
    fn into_event(
        self,
        specversion: Option<String>,
        mut labels: BTreeMap<String, String>,
        data: Option<Box<RawValue>>,
    ) -> Result<Event, FieldError> {
        match specversion.as_deref() {
            Some(SPECVERSION) => {}
            Some(other) => {
                return Err(FieldError::new(
                    "specversion",
                    format!("{other:?} is not a CloudEvents version herald reads (1.0)"),
                ));
            }
            None => return Err(FieldError::required("specversion")),
        }
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| FieldError::required(name))
        };
        let id = required(self.id, "id")?;
        let source = required(self.source, "source")?;
        let event_type = normalise_type(&required(self.event_type, "type")?);
        check_type(&event_type).map_err(|m| FieldError::new("type", m))?;
        let id = if check_id(&id).is_ok() {
            id
        } else {
            derived_id(&source, &id)
        };
        let time = self
            .time
            .map(|t| parse_time("time", &t))
            .transpose()?
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        if let Some(subject) = self.subject {
            labels.insert("subject".to_owned(), subject);
        }
        Ok(Event {
            id,
            event_type,
            source: Some(source),
            time,
            labels,
            data,
        })
    }
}

/// A CloudEvents `type` as a herald type: lowercase, and every character
/// outside `a-z0-9_-.` replaced by `-`.
pub fn normalise_type(event_type: &str) -> String {
    event_type
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-' | '.') => c,
            _ => '-',
        })
        .collect()
}

/// herald's id for a CloudEvent whose own id breaks herald's rules: stable for
/// the pair (source, id), which the spec makes unique per event.
fn derived_id(source: &str, id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(source)
        .chain_update([0])
        .chain_update(id)
        .finalize();
    let hex = format!("{digest:x}");
    format!("ce-{}", &hex[..32])
}

/// An extension attribute as a label value; `None` for a null (the spec's "absent").
fn extension_value(name: &str, raw: &str) -> Result<Option<String>, FieldError> {
    check_extension_name(name)?;
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|err| FieldError::new(name, format!("not JSON: {err}")))?;
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => Ok(Some(text)),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Ok(Some(value.to_string())),
        _ => Err(FieldError::new(
            name,
            "an extension attribute is a string, number or boolean, not an object or array",
        )),
    }
}

/// The spec's rule for attribute names: lowercase ASCII letters and digits.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn check_extension_name(name: &str) -> Result<(), FieldError> {
    if is_attribute_name(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            name,
            "is no CloudEvents attribute name (lowercase a-z and 0-9)",
        ))
    }
}

fn strip_prefix_ignoring_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
        .filter(|rest| !rest.is_empty())
}

fn json_string(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;

    fn structured_event(json: &str) -> Result<Event, FieldError> {
        decode(json.as_bytes()).map(|d| d.event)
    }

    const FULL: &str = r#"{"specversion":"1.0","id":"A234-1234-1234","source":"/mycontext",
        "type":"com.Example.Order/Created","time":"2018-04-05T17:31:00Z","subject":"orders/42",
        "datacontenttype":"application/json","comexampleextension1":"value","priority":5,
        "urgent":true,"ignored":null,"data":{"b":1,"a":[true]}}"#;

    #[test]
    fn a_structured_event_maps_onto_an_envelope() {
        let event = structured_event(FULL).unwrap();
        assert_eq!(event.id, "A234-1234-1234");
        assert_eq!(event.event_type, "com.example.order-created");
        assert_eq!(event.source.as_deref(), Some("/mycontext"));
        assert_eq!(event.time_rfc3339(), "2018-04-05T17:31:00Z");
        // Kept byte for byte, key order included.
        assert_eq!(event.data.unwrap().get(), r#"{"b":1,"a":[true]}"#);
        let labels: Vec<(&str, &str)> = event
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("comexampleextension1", "value"),
                ("priority", "5"),
                ("subject", "orders/42"),
                ("urgent", "true"),
            ]
        );
    }

    #[test]
    fn an_id_herald_cannot_carry_becomes_a_stable_derived_one() {
        let json =
            |id: &str| format!(r#"{{"specversion":"1.0","id":"{id}","source":"s","type":"a"}}"#);
        let first = structured_event(&json("github/42 #1")).unwrap().id;
        let again = structured_event(&json("github/42 #1")).unwrap().id;
        let other = structured_event(&json("github/43 #1")).unwrap().id;
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.starts_with("ce-") && first.len() == 35, "{first}");
        assert!(check_id(&first).is_ok());
    }

    #[test]
    fn data_base64_is_kept_as_its_text() {
        let event = structured_event(
            r#"{"specversion":"1.0","id":"1","source":"s","type":"a","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(event.data.unwrap().get(), r#""AAEC""#);
    }

    #[test]
    fn each_broken_rule_names_its_attribute() {
        let field = |json: &str| structured_event(json).unwrap_err().field;
        assert_eq!(
            field(r#"{"specversion":"0.3","id":"1","source":"s","type":"a"}"#),
            "specversion"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","source":"s","type":"a"}"#),
            "id"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","type":"a"}"#),
            "source"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","source":"s","type":""}"#),
            "type"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","source":"s","type":"a..b"}"#),
            "type"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":1,"source":"s","type":"a"}"#),
            "id"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","source":"s","type":"a","time":"now"}"#),
            "time"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","source":"s","type":"a","Bad-Name":"x"}"#),
            "Bad-Name"
        );
        assert_eq!(
            field(r#"{"specversion":"1.0","id":"1","source":"s","type":"a","ext":{"x":1}}"#),
            "ext"
        );
        assert_eq!(
            field(
                r#"{"specversion":"1.0","id":"1","source":"s","type":"a","data":1,"data_base64":"AA=="}"#
            ),
            "data_base64"
        );
    }

    #[test]
    fn types_are_lowercased_and_foreign_characters_become_dashes() {
        assert_eq!(
            normalise_type("sh.keptn.event.deployment.triggered"),
            "sh.keptn.event.deployment.triggered"
        );
        assert_eq!(
            normalise_type("com.GitHub.pull_request.Opened"),
            "com.github.pull_request.opened"
        );
        assert_eq!(
            normalise_type("io/testkube:start test"),
            "io-testkube-start-test"
        );
        assert_eq!(normalise_type("é.b"), "-.b");
    }

    fn header(name: &'static str, value: &'static str) -> (&'static str, Cow<'static, str>) {
        (name, Cow::Borrowed(value))
    }

    #[test]
    fn a_binary_message_maps_its_headers_and_keeps_json_data() {
        let headers = [
            header("cloudEvents:specversion", "1.0"),
            header("cloudEvents:id", "b-1"),
            header("cloudEvents:source", "urn:ci"),
            header("cloudEvents:type", "ci.Build.Done"),
            header("cloudEvents:subject", "main"),
            header("ce-team", "core"),
            header("x-other", "not an attribute"),
        ];
        let event = binary(headers, Some("application/json"), br#"{"ok":true}"#)
            .unwrap()
            .unwrap();
        assert_eq!(event.id, "b-1");
        assert_eq!(event.event_type, "ci.build.done");
        assert_eq!(event.labels["subject"], "main");
        assert_eq!(event.labels["team"], "core");
        assert_eq!(event.labels.len(), 2);
        assert_eq!(event.data.unwrap().get(), r#"{"ok":true}"#);
    }

    #[test]
    fn binary_data_that_is_not_json_is_kept_as_text_or_base64() {
        let headers = || {
            [
                header("ce_specversion", "1.0"),
                header("ce_id", "1"),
                header("ce_source", "s"),
                header("ce_type", "a"),
            ]
        };
        let text = binary(headers(), Some("text/plain"), b"hello")
            .unwrap()
            .unwrap();
        assert_eq!(text.data.unwrap().get(), r#""hello""#);
        let bytes = binary(headers(), Some("application/octet-stream"), &[0, 1, 2, 255])
            .unwrap()
            .unwrap();
        assert_eq!(bytes.data.unwrap().get(), r#""AAEC/w==""#);
        let untyped = binary(headers(), None, b"[1,2]").unwrap().unwrap();
        assert_eq!(untyped.data.unwrap().get(), "[1,2]");
        let empty = binary(headers(), Some("application/json"), b"")
            .unwrap()
            .unwrap();
        assert!(empty.data.is_none());
        let err = binary(headers(), Some("application/json"), b"nope")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.field, "data");
    }

    #[test]
    fn an_amqp_timestamp_in_milliseconds_is_a_time() {
        let headers = [
            header("cloudEvents_specversion", "1.0"),
            header("cloudEvents_id", "1"),
            header("cloudEvents_source", "s"),
            header("cloudEvents_type", "a"),
            header("cloudEvents_time", "1764410400250"),
        ];
        let event = binary(headers, None, b"").unwrap().unwrap();
        assert_eq!(event.time_rfc3339(), "2025-11-29T10:00:00.25Z");
    }

    #[test]
    fn a_message_without_a_specversion_header_is_no_cloudevent() {
        let headers = [header("ce-id", "1"), header("x-trace", "t")];
        assert!(binary(headers, None, b"{}").is_none());
    }
}
