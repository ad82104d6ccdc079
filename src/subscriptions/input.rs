//! A subscription as a user writes it (a create, a replace, or the stored one
//! with a merge patch applied): read by serde into types that each check their
//! field, so an error names the field by its JSON path, then the rules that tie
//! fields together. The result is the `Subscription` that is stored.

use std::{collections::BTreeMap, time::Duration};

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_with::{DisplayFromStr, serde_as};
use utoipa::ToSchema;

use super::{
    filter::Filter,
    model::{CloudEventsMode, Format, Method, Subscription, check_name},
    pattern::EventPattern,
    selector::Selector,
    signature::SigningSecret,
    template::{self, is_template},
};
use crate::field_error::FieldError;

/// What a user may send. Everything is optional here so that a missing
/// required field is named as such, and `null` means the same as absent. Its
/// schema is the body of a merge patch; the API requires `name`, `url` and
/// `events` of a create (`url` and `events` of a replace) on top.
#[serde_as]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = SubscriptionPatch,
    description = "Fields of a subscription to change; `null` resets one to its default.",
    example = json!({"name": "deploys", "url": "https://hooks.example.com/herald",
                     "events": ["deployment.*"], "selector": "environment=production"})
)]
pub struct Input {
    /// Kubernetes name rules: lowercase alphanumerics and '-', 1-63.
    #[schema(
        nullable = false,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 63
    )]
    name: Option<String>,
    description: Option<String>,
    /// http or https; may hold `{{ credential('NAME') }}`.
    #[schema(nullable = false, pattern = "^https?://")]
    url: Option<String>,
    /// `POST` when absent.
    method: Option<Method>,
    /// Exact event types or globs (`deployment.*`, `*`), case-insensitive.
    #[serde_as(as = "Option<Vec<DisplayFromStr>>")]
    #[schema(value_type = Option<Vec<EventPatternText>>, nullable = false, min_items = 1)]
    events: Option<Vec<EventPattern>>,
    /// Kubernetes label-selector syntax over the event's labels.
    selector: Option<String>,
    /// A condition on the event's attributes and `data` (README, "Filters").
    filter: Option<String>,
    /// `json` when absent.
    format: Option<Format>,
    /// How `format: cloudevents` is sent: `structured` when absent, or `binary`.
    cloudevents_mode: Option<CloudEventsMode>,
    /// The body for `template`; the message text for `slack` and `teams`.
    template: Option<String>,
    /// The content type of a `template` body (default `application/json`).
    content_type: Option<String>,
    /// Extra request headers; values may be templates and use `credential()`.
    headers: Option<BTreeMap<String, String>>,
    /// `true` when absent.
    enabled: Option<bool>,
    /// Per-attempt timeout, a human duration from `1ms` to `5m`.
    timeout: Option<String>,
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<u64>,
    /// Deliveries per second across every worker.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000)]
    rate_limit: Option<f64>,
    /// The signing secret, `whsec_<base64>`; generated when absent.
    #[schema(value_type = Option<String>, pattern = "^whsec_", write_only)]
    secret: Option<SigningSecret>,
}

/// An entry of `events` as the OpenAPI document shows it: what
/// `EventPattern::parse` takes.
#[derive(ToSchema)]
#[schema(
    as = EventPattern,
    pattern = "^[A-Za-z0-9_*-]+(\\.[A-Za-z0-9_*-]+)*$",
    min_length = 1,
    max_length = 128
)]
#[allow(dead_code)] // describes EventPattern's text
pub struct EventPatternText(String);

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
        let filter = self.filter.filter(|f| !f.trim().is_empty());
        if let Some(filter) = &filter {
            Filter::parse(filter).map_err(|e| FieldError::new("filter", e))?;
        }
        let format = self.format.unwrap_or(Format::Json);
        check_format(format, self.template.is_some(), self.content_type.is_some())?;
        if self.cloudevents_mode.is_some() && format != Format::CloudEvents {
            return Err(FieldError::new(
                "cloudevents_mode",
                "only for format cloudevents",
            ));
        }
        let (secret, previous_secret) = match (self.secret, existing) {
            // The same secret again (an exported file applied back) rotates nothing.
            (Some(secret), Some(existing)) if secret == existing.secret => {
                (secret, existing.previous_secret.clone())
            }
            (Some(secret), _) => (secret, None),
            (None, Some(existing)) => (existing.secret.clone(), existing.previous_secret.clone()),
            (None, None) => (SigningSecret::generate(), None),
        };
        if let Some(content_type) = &self.content_type {
            check_header_value("content_type", content_type)?;
        }
        let sub = Subscription {
            name,
            description: self.description,
            url,
            method: self.method.unwrap_or(Method::Post),
            events,
            selector,
            filter,
            format,
            cloudevents_mode: self.cloudevents_mode,
            template: self.template,
            content_type: self.content_type,
            headers: headers(self.headers.unwrap_or_default())?,
            enabled: self.enabled.unwrap_or(true),
            timeout: self.timeout.as_deref().map(timeout).transpose()?,
            max_attempts: self.max_attempts.map(max_attempts).transpose()?,
            rate_limit: self.rate_limit.map(rate_limit).transpose()?,
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
        (Format::Json | Format::CloudEvents, true) => {
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

/// Header names lowercased, each one a subscription may set, each value a
/// valid header value (before any template in it is rendered).
fn headers(given: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, FieldError> {
    let mut headers = BTreeMap::new();
    for (name, value) in given {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(FieldError::new(field, "not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("webhook-")
            || lower.starts_with("herald-")
        {
            return Err(FieldError::new(field, "herald sets this header itself"));
        }
        check_header_value(&field, &value)?;
        headers.insert(lower, value);
    }
    Ok(headers)
}

fn check_header_value(field: &str, value: &str) -> Result<(), FieldError> {
    match HeaderValue::from_str(value) {
        Ok(_) => Ok(()),
        Err(_) => Err(FieldError::new(field, "not a valid header value")),
    }
}

/// A per-attempt timeout: a human duration from 1ms to 5m.
fn timeout(text: &str) -> Result<Duration, FieldError> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(300))
        .ok_or_else(|| {
            FieldError::new(
                "timeout",
                format!("{text:?} is not a duration between 1ms and 5m"),
            )
        })
}

/// Attempts per delivery, the first included: 1 to 100.
fn max_attempts(n: u64) -> Result<u32, FieldError> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| FieldError::new("max_attempts", "must be an integer from 1 to 100"))
}

/// Deliveries per second: above 0, at most a million.
fn rate_limit(rate: f64) -> Result<f64, FieldError> {
    if rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err(FieldError::new(
            "rate_limit",
            "must be a number of deliveries per second above 0 (at most 1000000)",
        ))
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

    /// The error of a minimal valid subscription with `key` set to `value`.
    fn error_with(key: &str, value: Value) -> FieldError {
        let mut body = json!({"name": "ci", "url": "https://example.com/", "events": ["*"]});
        body[key] = value;
        error_of(body)
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
        let with = |k: &str, v: Value| error_with(k, v).field;
        assert_eq!(with("name", json!("Not_OK")), "name");
        assert_eq!(with("url", json!("ftp://example.com/")), "url");
        assert_eq!(with("url", json!("https://user:pw@example.com/")), "url");
        assert_eq!(with("method", json!("DELETE")), "method");
        assert_eq!(with("events", json!([])), "events");
        assert_eq!(with("events", json!(["ok", "bad pattern"])), "events[1]");
        assert_eq!(with("selector", json!("env in (")), "selector");
        assert_eq!(with("filter", json!("status == \"failed\"")), "filter");
        assert_eq!(with("filter", json!(5)), "filter");
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
        assert_eq!(with("rate_limit", json!(0)), "rate_limit");
        assert_eq!(with("rate_limit", json!("fast")), "rate_limit");
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
        let message = |k: &str, v: Value| error_with(k, v).message;
        assert_eq!(
            message("method", json!("get")),
            "\"get\" is not POST, PUT or PATCH"
        );
        assert_eq!(
            message("format", json!("xml")),
            "\"xml\" is not json, slack, teams, template or cloudevents"
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
        assert_eq!(
            error_with("events", Value::Null).to_string(),
            "events: required"
        );
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
    fn a_filter_is_kept_as_written_and_a_blank_one_is_none() {
        let with = |filter: Value| {
            let body = json!({"name": "ci", "url": "https://example.com/", "events": ["*"], "filter": filter});
            Subscription::from_json(&body, None).unwrap().filter
        };
        let written = "data.status == 'failed'  and data.duration_ms > 1000";
        assert_eq!(with(json!(written)).as_deref(), Some(written));
        assert_eq!(with(json!(" \n ")), None);
        assert_eq!(with(Value::Null), None);
        let message = error_with("filter", json!("data.x = 1")).to_string();
        assert_eq!(
            message,
            "filter: '=' is not an operator; compare with '==' at position 8"
        );
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
