//! The subscription resource: what is stored in Redis, what the API shows
//! (never the secrets), and the validation that turns user JSON into a
//! `Subscription` or a `FieldError` naming the field.

use std::{collections::BTreeMap, time::Duration};

use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{pattern::EventPattern, selector::Selector};
use crate::delivery::{
    signature::SigningSecret,
    template::{self, is_template},
};

/// How long a rotated-out secret keeps signing next to the new one.
pub const PREVIOUS_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A subscription as stored in Redis (`<rp>:subscriptions`, name -> this as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub url: String,
    pub method: Method,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    pub format: Format,
    /// The body for `template`; the message text for `slack` and `teams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The content type of a `template` body (default `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    pub secret: SigningSecret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
}

/// The secret a rotation replaced, still signing until `until`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SigningSecret,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Slack,
    Teams,
    Template,
}

/// A rule a subscription broke; `field` is its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Headers herald sets itself; a subscription may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

impl Subscription {
    /// Validates user JSON (a create or a replace). `existing` lends its secrets
    /// when the body carries none, so a replace never silently changes the key.
    pub fn from_json(
        body: &Value,
        existing: Option<&Subscription>,
    ) -> Result<Subscription, FieldError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body", "a subscription must be a JSON object"))?;
        const KNOWN: &[&str] = &[
            "name",
            "description",
            "url",
            "method",
            "events",
            "selector",
            "format",
            "template",
            "content_type",
            "headers",
            "enabled",
            "timeout",
            "max_attempts",
            "secret",
        ];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(unknown, "unknown field"));
        }
        let name = required_str(obj, "name")?;
        check_name(name)?;
        let url = required_str(obj, "url")?;
        if is_template(url) {
            // Judged after rendering, at every attempt; only the scheme is fixed here.
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "url",
                    "a templated URL must start with http:// or https://",
                ));
            }
        } else {
            check_url(url)?;
        }
        let method = match optional_str(obj, "method")?
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("PATCH") => Method::Patch,
            Some(other) => {
                return Err(invalid(
                    "method",
                    format!("{other:?} is not POST, PUT or PATCH"),
                ));
            }
        };
        let events = parse_events(obj.get("events"))?;
        let selector = optional_str(obj, "selector")?
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Selector::parse(s)
                    .map(|_| s.to_owned())
                    .map_err(|e| invalid("selector", e.to_string()))
            })
            .transpose()?;
        let format = match optional_str(obj, "format")? {
            None | Some("json") => Format::Json,
            Some("slack") => Format::Slack,
            Some("teams") => Format::Teams,
            Some("template") => Format::Template,
            Some(other) => {
                return Err(invalid(
                    "format",
                    format!("{other:?} is not json, slack, teams or template"),
                ));
            }
        };
        let template = optional_str(obj, "template")?.map(str::to_owned);
        match (format, &template) {
            (Format::Template, None) => {
                return Err(invalid("template", "required with format \"template\""));
            }
            (Format::Json, Some(_)) => {
                return Err(invalid(
                    "template",
                    "only for format template, slack or teams",
                ));
            }
            _ => {}
        }
        let content_type = optional_str(obj, "content_type")?.map(str::to_owned);
        if let Some(ct) = &content_type {
            if format != Format::Template {
                return Err(invalid("content_type", "only for format template"));
            }
            reqwest::header::HeaderValue::from_str(ct)
                .map_err(|_| invalid("content_type", "not a valid header value"))?;
        }
        let headers = parse_headers(obj.get("headers"))?;
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("enabled", "must be true or false")),
        };
        let timeout = optional_str(obj, "timeout")?
            .map(|t| {
                humantime::parse_duration(t)
                    .ok()
                    .filter(|d| !d.is_zero() && *d <= Duration::from_secs(300))
                    .ok_or_else(|| {
                        invalid(
                            "timeout",
                            format!("{t:?} is not a duration between 1ms and 5m"),
                        )
                    })
            })
            .transpose()?;
        let max_attempts = match obj.get("max_attempts") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=100).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("max_attempts", "must be an integer from 1 to 100"))?,
            ),
        };
        let (secret, previous_secret) = match optional_str(obj, "secret")? {
            Some(s) => (
                SigningSecret::parse(s).map_err(|e| invalid("secret", e.to_string()))?,
                None,
            ),
            None => match existing {
                Some(e) => (e.secret.clone(), e.previous_secret.clone()),
                None => (SigningSecret::generate(), None),
            },
        };
        let sub = Subscription {
            name: name.to_owned(),
            description: optional_str(obj, "description")?.map(str::to_owned),
            url: url.to_owned(),
            method,
            events,
            selector,
            format,
            template,
            content_type,
            headers,
            enabled,
            timeout,
            max_attempts,
            secret,
            previous_secret,
        };
        template::check(&sub).map_err(|(field, message)| invalid(&field, message))?;
        Ok(sub)
    }

    /// What list and get return: everything but the secrets.
    pub fn public_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a Subscription always serialises");
        if let Some(obj) = value.as_object_mut() {
            obj.remove("secret");
            obj.remove("previous_secret");
        }
        value
    }

    /// The secrets that sign now: the current one, plus the previous during its grace period.
    pub fn signing_secrets(&self, now: OffsetDateTime) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.secret];
        if let Some(prev) = &self.previous_secret
            && prev.until > now
        {
            secrets.push(&prev.secret);
        }
        secrets
    }

    /// Replaces the secret, keeping the old one signing for `PREVIOUS_SECRET_GRACE`.
    pub fn rotate_secret(&mut self, now: OffsetDateTime) {
        let old = std::mem::replace(&mut self.secret, SigningSecret::generate());
        self.previous_secret = Some(PreviousSecret {
            secret: old,
            until: now + PREVIOUS_SECRET_GRACE,
        });
    }
}

/// Kubernetes name rules: lowercase alphanumerics and '-', 1-63, alphanumeric at both ends.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} must be 1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
            ),
        ))
    }
}

fn check_url(url: &str) -> Result<(), FieldError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "url",
            format!("scheme {:?} is not http or https", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Credentials in a URL end up in logs; headers are the place for them.
        return Err(invalid(
            "url",
            "must not carry a user name or password; use headers",
        ));
    }
    Ok(())
}

fn parse_events(value: Option<&Value>) -> Result<Vec<String>, FieldError> {
    let list = match value {
        Some(Value::Array(list)) if !list.is_empty() => list,
        None | Some(Value::Null) => return Err(invalid("events", "required")),
        Some(_) => {
            return Err(invalid(
                "events",
                "must be a non-empty list of event types or globs",
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("events[{i}]");
            let s = v
                .as_str()
                .ok_or_else(|| invalid(&field, "must be a string"))?;
            EventPattern::parse(s)
                .map(|p| p.as_str().to_owned())
                .map_err(|e| invalid(&field, e.to_string()))
        })
        .collect()
}

fn parse_headers(value: Option<&Value>) -> Result<BTreeMap<String, String>, FieldError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(invalid(
                "headers",
                "must be an object of header name to value",
            ));
        }
    };
    let mut headers = BTreeMap::new();
    for (name, value) in map {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| invalid(&field, "not a valid header name"))?;
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("webhook-")
            || lower.starts_with("herald-")
        {
            return Err(invalid(&field, "herald sets this header itself"));
        }
        let value = value
            .as_str()
            .ok_or_else(|| invalid(&field, "must be a string"))?;
        reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| invalid(&field, "not a valid header value"))?;
        headers.insert(lower, value.to_owned());
    }
    Ok(headers)
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    optional_str(obj, field)?.ok_or_else(|| invalid(field, "required"))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object just above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(body: Value) -> String {
        Subscription::from_json(&body, None).unwrap_err().field
    }

    #[test]
    fn a_minimal_subscription_gets_defaults_and_a_secret() {
        let sub = Subscription::from_json(
            &json!({"name": "ci", "url": "https://example.com/hook", "events": ["deployment.*"]}),
            None,
        )
        .unwrap();
        assert_eq!(sub.method, Method::Post);
        assert_eq!(sub.format, Format::Json);
        assert!(sub.enabled);
        assert!(sub.secret.expose().starts_with("whsec_"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"name": "ci", "url": "https://example.com/", "events": ["*"]});
        let with = |k: &str, v: Value| {
            let mut body = ok.clone();
            body[k] = v;
            field_of(body)
        };
        assert_eq!(with("name", json!("Not_OK")), "name");
        assert_eq!(with("url", json!("ftp://example.com/")), "url");
        assert_eq!(with("url", json!("https://user:pw@example.com/")), "url");
        assert_eq!(with("method", json!("DELETE")), "method");
        assert_eq!(with("events", json!([])), "events");
        assert_eq!(with("events", json!(["ok", "bad pattern"])), "events[1]");
        assert_eq!(with("selector", json!("env in (")), "selector");
        assert_eq!(with("format", json!("xml")), "format");
        assert_eq!(with("format", json!("template")), "template");
        assert_eq!(with("template", json!("{{ event.id }}")), "template");
        assert_eq!(with("content_type", json!("text/plain")), "content_type");
        assert_eq!(
            with("headers", json!({"webhook-id": "x"})),
            "headers.webhook-id"
        );
        assert_eq!(with("headers", json!({"x-ok": 5})), "headers.x-ok");
        assert_eq!(with("enabled", json!("yes")), "enabled");
        assert_eq!(with("timeout", json!("soon")), "timeout");
        assert_eq!(with("max_attempts", json!(0)), "max_attempts");
        assert_eq!(with("secret", json!("not-a-secret")), "secret");
        assert_eq!(with("colour", json!("blue")), "colour");
        assert_eq!(
            field_of(json!({"url": "https://example.com/", "events": ["*"]})),
            "name"
        );
    }

    #[test]
    fn templates_that_do_not_parse_name_their_field() {
        let base = json!({"name": "t", "url": "https://example.com/", "events": ["*"], "format": "template"});
        let with = |k: &str, v: Value| {
            let mut body = base.clone();
            body["template"] = json!("{{ event.id }}");
            body[k] = v;
            field_of(body)
        };
        assert_eq!(with("template", json!("{{ event.id ")), "template");
        assert_eq!(
            with(
                "headers",
                json!({"authorization": "Bearer {{ credential('X' }}"})
            ),
            "headers.authorization"
        );
        assert_eq!(with("url", json!("https://{{ broken")), "url");
        assert_eq!(with("url", json!("{{ u }}")), "url");
        let mut ok = base.clone();
        ok["template"] = json!("{\"id\": {{ event.id | tojson }}}");
        ok["headers"] = json!({"authorization": "Bearer {{ credential('TOKEN') }}"});
        ok["url"] = json!("https://hooks.example.com/{{ credential('PATH') }}");
        Subscription::from_json(&ok, None).unwrap();
    }

    #[test]
    fn the_public_view_has_no_secrets() {
        let mut sub = Subscription::from_json(
            &json!({"name": "ci", "url": "https://example.com/", "events": ["*"]}),
            None,
        )
        .unwrap();
        sub.rotate_secret(OffsetDateTime::now_utc());
        let text = sub.public_json().to_string();
        assert!(!text.contains("whsec_"), "{text}");
    }

    #[test]
    fn a_rotated_secret_signs_for_its_grace_period_only() {
        let mut sub = Subscription::from_json(
            &json!({"name": "ci", "url": "https://example.com/", "events": ["*"]}),
            None,
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        sub.rotate_secret(now);
        assert_eq!(sub.signing_secrets(now).len(), 2);
        assert_eq!(sub.signing_secrets(now + PREVIOUS_SECRET_GRACE).len(), 1);
    }

    #[test]
    fn a_replace_without_a_secret_keeps_the_existing_one() {
        let body = json!({"name": "ci", "url": "https://example.com/", "events": ["*"]});
        let first = Subscription::from_json(&body, None).unwrap();
        let second = Subscription::from_json(&body, Some(&first)).unwrap();
        assert_eq!(first.secret, second.secret);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
