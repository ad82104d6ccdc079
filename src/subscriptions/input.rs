//! A subscription as a user writes it (a create, a replace, or the stored one
//! with a merge patch applied): read by serde into types that each check their
//! field, so an error names the field by its JSON path, then the rules that tie
//! fields together. The result is the `Subscription` that is stored.

use std::{collections::BTreeMap, time::Duration};

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    model::{Format, Method, Subscription, check_name},
    pattern::EventPattern,
    selector::Selector,
    signature::SigningSecret,
    template::{self, is_template},
};
use crate::field_error::FieldError;

/// What a user may send. Everything is optional here so that a missing
/// required field is named as such, and `null` means the same as absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    name: Option<String>,
    description: Option<String>,
    url: Option<String>,
    method: Option<Method>,
    events: Option<Vec<EventPattern>>,
    selector: Option<String>,
    format: Option<Format>,
    /// The body for `template`; the message text for `slack` and `teams`.
    template: Option<String>,
    content_type: Option<HeaderText>,
    headers: Option<BTreeMap<HeaderKey, HeaderText>>,
    enabled: Option<bool>,
    timeout: Option<Timeout>,
    max_attempts: Option<MaxAttempts>,
    secret: Option<SigningSecret>,
}

impl Subscription {
    /// Validates user JSON (a create or a replace). `existing` lends its secrets
    /// when the body carries none, so a replace never silently changes the key.
    pub fn from_json(body: &Value, existing: Option<&Subscription>) -> Result<Self, FieldError> {
        if !body.is_object() {
            return Err(FieldError::new(
                "body",
                "a subscription must be a JSON object",
            ));
        }
        let input: Input =
            serde_path_to_error::deserialize(body).map_err(FieldError::from_serde)?;
        input.into_subscription(existing)
    }
}

impl Input {
    fn into_subscription(
        self,
        existing: Option<&Subscription>,
    ) -> Result<Subscription, FieldError> {
        let name = self.name.ok_or_else(|| FieldError::required("name"))?;
        check_name(&name)?;
        let url = self.url.ok_or_else(|| FieldError::required("url"))?;
        check_url(&url)?;
        let events = match self.events {
            None => return Err(FieldError::required("events")),
            Some(events) if events.is_empty() => {
                return Err(FieldError::new(
                    "events",
                    "must be a non-empty list of event types or globs",
                ));
            }
            Some(events) => events,
        };
        let selector = self.selector.filter(|s| !s.trim().is_empty());
        if let Some(selector) = &selector {
            Selector::parse(selector).map_err(|e| FieldError::new("selector", e))?;
        }
        let format = self.format.unwrap_or(Format::Json);
        check_format(format, self.template.is_some(), self.content_type.is_some())?;
        let (secret, previous_secret) = match (self.secret, existing) {
            (Some(secret), _) => (secret, None),
            (None, Some(existing)) => (existing.secret.clone(), existing.previous_secret.clone()),
            (None, None) => (SigningSecret::generate(), None),
        };
        let headers = self.headers.unwrap_or_default().into_iter();
        let sub = Subscription {
            name,
            description: self.description,
            url,
            method: self.method.unwrap_or(Method::Post),
            events,
            selector,
            format,
            template: self.template,
            content_type: self.content_type.map(|HeaderText(text)| text),
            headers: headers
                .map(|(HeaderKey(k), HeaderText(v))| (k, v))
                .collect(),
            enabled: self.enabled.unwrap_or(true),
            timeout: self.timeout.map(|Timeout(t)| t),
            max_attempts: self.max_attempts.map(|MaxAttempts(n)| n),
            secret,
            previous_secret,
        };
        template::check(&sub)?;
        Ok(sub)
    }
}

/// An http(s) URL with a host and no userinfo. A templated URL is judged after
/// rendering, at every attempt; only its scheme is fixed here.
fn check_url(url: &str) -> Result<(), FieldError> {
    let invalid = |message: &str| FieldError::new("url", message);
    if is_template(url) {
        return if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(invalid(
                "a templated URL must start with http:// or https://",
            ))
        };
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        let scheme = parsed.scheme();
        return Err(invalid(&format!("scheme {scheme:?} is not http or https")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Credentials in a URL end up in logs; headers are the place for them.
        return Err(invalid(
            "must not carry a user name or password; use headers",
        ));
    }
    Ok(())
}

/// `template` and `content_type` only where the format uses them.
fn check_format(format: Format, template: bool, content_type: bool) -> Result<(), FieldError> {
    match (format, template) {
        (Format::Template, false) => {
            return Err(FieldError::new(
                "template",
                "required with format \"template\"",
            ));
        }
        (Format::Json, true) => {
            return Err(FieldError::new(
                "template",
                "only for format template, slack or teams",
            ));
        }
        _ => {}
    }
    if content_type && format != Format::Template {
        return Err(FieldError::new("content_type", "only for format template"));
    }
    Ok(())
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

/// A header name a subscription may set, lowercased.
#[derive(PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct HeaderKey(String);

impl TryFrom<String> for HeaderKey {
    type Error = &'static str;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let lower = name.to_ascii_lowercase();
        HeaderName::from_bytes(lower.as_bytes()).map_err(|_| "not a valid header name")?;
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("webhook-")
            || lower.starts_with("herald-")
        {
            return Err("herald sets this header itself");
        }
        Ok(Self(lower))
    }
}

/// Text that is a valid header value (before any template in it is rendered).
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct HeaderText(String);

impl TryFrom<String> for HeaderText {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        HeaderValue::from_str(&text).map_err(|_| "not a valid header value")?;
        Ok(Self(text))
    }
}

/// A per-attempt timeout: a human duration from 1ms to 5m.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Timeout(Duration);

impl TryFrom<String> for Timeout {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        humantime::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(300))
            .map(Self)
            .ok_or_else(|| format!("{text:?} is not a duration between 1ms and 5m"))
    }
}

/// Attempts per delivery, the first included: 1 to 100.
#[derive(Deserialize)]
#[serde(try_from = "u64")]
struct MaxAttempts(u32);

impl TryFrom<u64> for MaxAttempts {
    type Error = &'static str;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .map(Self)
            .ok_or("must be an integer from 1 to 100")
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(body: Value) -> FieldError {
        Subscription::from_json(&body, None).unwrap_err()
    }

    fn field_of(body: Value) -> String {
        error_of(body).field
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
    fn null_means_the_default() {
        let body = json!({"name": "ci", "url": "https://example.com/", "events": ["*"],
                          "enabled": null, "method": null, "headers": null, "selector": null});
        let sub = Subscription::from_json(&body, None).unwrap();
        assert!(sub.enabled);
        assert_eq!(sub.method, Method::Post);
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
        assert_eq!(
            with("headers", json!({"bad header": "x"})),
            "headers.bad header"
        );
        assert_eq!(with("headers", json!({"x-ok": "a\nb"})), "headers.x-ok");
        assert_eq!(with("enabled", json!("yes")), "enabled");
        assert_eq!(with("timeout", json!("soon")), "timeout");
        assert_eq!(with("timeout", json!("10m")), "timeout");
        assert_eq!(with("max_attempts", json!(0)), "max_attempts");
        assert_eq!(with("max_attempts", json!(-1)), "max_attempts");
        assert_eq!(with("secret", json!("not-a-secret")), "secret");
        assert_eq!(with("colour", json!("blue")), "colour");
        assert_eq!(
            field_of(json!({"url": "https://example.com/", "events": ["*"]})),
            "name"
        );
        assert_eq!(field_of(json!(["not", "an", "object"])), "body");
    }

    #[test]
    fn messages_say_what_is_wrong_without_parser_positions() {
        let ok = json!({"name": "ci", "url": "https://example.com/", "events": ["*"]});
        let message = |k: &str, v: Value| {
            let mut body = ok.clone();
            body[k] = v;
            error_of(body).message
        };
        assert_eq!(
            message("method", json!("get")),
            "\"get\" is not POST, PUT or PATCH"
        );
        assert_eq!(
            message("format", json!("xml")),
            "\"xml\" is not json, slack, teams or template"
        );
        assert_eq!(
            message("timeout", json!("soon")),
            "\"soon\" is not a duration between 1ms and 5m"
        );
        assert_eq!(
            message("max_attempts", json!(101)),
            "must be an integer from 1 to 100"
        );
        assert_eq!(
            message("headers", json!({"Herald-Attempt": "1"})),
            "herald sets this header itself"
        );
        let mut missing = ok.clone();
        missing["events"] = Value::Null;
        assert_eq!(error_of(missing).to_string(), "events: required");
        let secret = message("secret", json!("whsec_dG9vIHNob3J0"));
        assert!(
            !secret.contains("dG9v"),
            "a secret is never echoed: {secret}"
        );
        for text in [message("enabled", json!(1)), message("colour", json!(1))] {
            assert!(!text.contains("line"), "{text}");
        }
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
