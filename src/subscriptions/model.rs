//! The subscription as stored in Redis and shown by the API (never the
//! secrets): its fields, methods and formats, and the signing secrets a
//! rotation keeps. What users send is checked into it by `input`.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::{DisplayFromStr, serde_as, skip_serializing_none};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{pattern::EventPattern, signature::SigningSecret};
use crate::field_error::FieldError;

/// How long a rotated-out secret keeps signing next to the new one.
pub const PREVIOUS_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A subscription as stored in Redis (`<rp>:subscriptions`, name -> this as
/// JSON). Fields that are `None` are left out of the JSON. Its schema is what
/// the API shows: everything but the secrets (`public_json`).
#[serde_as]
#[skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(description = "A webhook subscription, as the API shows it: never its secrets.")]
pub struct Subscription {
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    pub method: Method,
    /// Lowercased; matching is case-insensitive.
    #[serde_as(as = "Vec<DisplayFromStr>")]
    #[schema(value_type = Vec<String>)]
    pub events: Vec<EventPattern>,
    pub selector: Option<String>,
    /// A condition on the event's attributes and `data` (see `filter`).
    pub filter: Option<String>,
    pub format: Format,
    /// How `cloudevents` is sent (default structured).
    pub cloudevents_mode: Option<CloudEventsMode>,
    /// The body for `template`; the message text for `slack` and `teams`.
    pub template: Option<String>,
    /// The content type of a `template` body (default `application/json`).
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// A human duration (`2s`, `500ms`).
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>)]
    pub timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    /// Deliveries per second across every worker of the deployment.
    pub rate_limit: Option<f64>,
    #[schema(ignore)]
    pub secret: SigningSecret,
    #[schema(ignore)]
    pub previous_secret: Option<PreviousSecret>,
}

/// The secret a rotation replaced, still signing until `until`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SigningSecret,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// The HTTP method of a delivery, named in any case (`post`, `POST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE", try_from = "String")]
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

impl TryFrom<String> for Method {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            "PATCH" => Ok(Self::Patch),
            _ => Err(format!("{text:?} is not POST, PUT or PATCH")),
        }
    }
}

/// The shape of a delivery's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Format {
    Json,
    Slack,
    Teams,
    Template,
    CloudEvents,
}

impl Format {
    pub const ALL: [Self; 5] = [
        Self::Json,
        Self::Slack,
        Self::Teams,
        Self::Template,
        Self::CloudEvents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Template => "template",
            Self::CloudEvents => "cloudevents",
        }
    }
}

impl TryFrom<String> for Format {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not json, slack, teams, template or cloudevents"))
    }
}

/// CloudEvents' HTTP content modes: the whole event as a JSON body, or its
/// attributes in `ce-*` headers and its data as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudEventsMode {
    #[default]
    Structured,
    Binary,
}

impl Subscription {
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
        Err(FieldError::new(
            "name",
            format!(
                "{name:?} must be 1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Subscription {
        let body = json!({"name": "ci", "url": "https://example.com/", "events": ["*"]});
        Subscription::from_json(&body, None).unwrap()
    }

    #[test]
    fn the_public_view_has_no_secrets() {
        let mut sub = sample();
        sub.rotate_secret(OffsetDateTime::now_utc());
        let text = sub.public_json().to_string();
        assert!(!text.contains("whsec_"), "{text}");
    }

    #[test]
    fn a_rotated_secret_signs_for_its_grace_period_only() {
        let mut sub = sample();
        let now = OffsetDateTime::now_utc();
        sub.rotate_secret(now);
        assert_eq!(sub.signing_secrets(now).len(), 2);
        assert_eq!(sub.signing_secrets(now + PREVIOUS_SECRET_GRACE).len(), 1);
    }

    #[test]
    fn the_stored_form_reads_back_as_it_was_written() {
        let mut body = json!({"name": "ci", "url": "https://example.com/", "events": ["Deploy.*"],
                              "method": "put", "timeout": "2s", "headers": {"X-Team": "a"},
                              "filter": "data.replicas >= 3"});
        body["format"] = json!("slack");
        let sub = Subscription::from_json(&body, None).unwrap();
        let stored = serde_json::to_string(&sub).unwrap();
        let read: Subscription = serde_json::from_str(&stored).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), stored);
        let shown = sub.public_json();
        assert_eq!(shown["events"], json!(["deploy.*"]));
        assert_eq!(shown["method"], "PUT");
        assert_eq!(shown["timeout"], "2s");
        assert_eq!(shown["headers"], json!({"x-team": "a"}));
        assert_eq!(shown["filter"], "data.replicas >= 3");
    }
}
