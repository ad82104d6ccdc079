//! The request body of an attempt, by the subscription's format. `json` sends
//! the event's canonical JSON exactly as the task carries it (no re-encoding
//! on the hot path); `slack` and `teams` build the receivers' message shapes;
//! `template` renders the subscription's template; `cloudevents` makes a
//! CloudEvent of it, structured or binary.

use std::borrow::Cow;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{cloudevents, task::DeliveryTask};
use crate::{
    event::Event,
    subscriptions::{
        model::{CloudEventsMode, Format, Subscription},
        template::{Context, RenderError, Templates},
    },
};

/// Slack caps a section's text at 3000 characters.
const SLACK_TEXT_CHARS: usize = 2900;

pub struct Rendered {
    pub body: Bytes,
    pub content_type: Cow<'static, str>,
    /// Headers the format itself sets (CloudEvents' binary mode).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `templates` are the subscription's compiled templates (`None`: nothing templated).
pub fn render(
    sub: &Subscription,
    templates: Option<&Templates>,
    task: &DeliveryTask,
    ctx: Option<&Context>,
) -> Result<Rendered, RenderError> {
    let event = &task.event;
    let text = match (templates.filter(|t| t.has_body()), ctx) {
        (Some(t), Some(ctx)) => Some(t.body(ctx)?),
        _ => None,
    };
    let json = |value: Value| Rendered {
        body: Bytes::from(serde_json::to_vec(&value).expect("a JSON value always serialises")),
        content_type: Cow::Borrowed("application/json"),
        headers: Vec::new(),
    };
    Ok(match sub.format {
        Format::Json => Rendered {
            body: task.body.clone(),
            content_type: Cow::Borrowed("application/json"),
            headers: Vec::new(),
        },
        Format::CloudEvents => match sub.cloudevents_mode.unwrap_or_default() {
            CloudEventsMode::Structured => Rendered {
                body: cloudevents::structured(event),
                content_type: Cow::Borrowed(cloudevents::STRUCTURED_CONTENT_TYPE),
                headers: Vec::new(),
            },
            CloudEventsMode::Binary => {
                let (headers, body) = cloudevents::binary(event);
                Rendered {
                    body,
                    content_type: Cow::Borrowed("application/json"),
                    headers,
                }
            }
        },
        Format::Slack => json(slack(event, text.as_deref(), task.attempt)),
        Format::Teams => json(teams(event, text.as_deref())),
        Format::Template => {
            let body = text.ok_or_else(|| {
                RenderError::Template("format template without a template".into())
            })?;
            let content_type = sub
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into());
            // A body that claims to be JSON must be JSON, or receivers get garbage.
            if content_type.contains("json") {
                serde_json::from_str::<serde::de::IgnoredAny>(&body).map_err(|err| {
                    RenderError::Template(format!(
                        "body claims {content_type} but is not JSON: {err}"
                    ))
                })?;
            }
            Rendered {
                body: Bytes::from(body),
                content_type: Cow::Owned(content_type),
                headers: Vec::new(),
            }
        }
    })
}

fn default_text(event: &Event) -> String {
    match &event.source {
        Some(source) => format!("{} from {source}", event.event_type),
        None => event.event_type.clone(),
    }
}

fn labels_text(event: &Event, separator: &str) -> String {
    event
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// `data` as compact JSON, cut to `max` characters.
fn data_text(event: &Event, max: usize) -> Option<String> {
    let raw = event.data.as_ref()?.get();
    Some(if raw.chars().count() > max {
        let cut: String = raw.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        raw.to_owned()
    })
}

/// A Slack incoming-webhook message: `text` (the fallback and notification) plus `blocks`.
pub fn slack(event: &Event, text: Option<&str>, attempt: u32) -> Value {
    let text = text.map_or_else(|| default_text(event), str::to_owned);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Source*\n{}", event.source.as_deref().unwrap_or("-"))}),
        json!({"type": "mrkdwn", "text": format!("*Time*\n{}", event.time_rfc3339())}),
    ];
    if !event.labels.is_empty() {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Labels*\n{}", labels_text(event, ", "))}),
        );
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": event.event_type, "emoji": false}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text.chars().take(SLACK_TEXT_CHARS).collect::<String>()}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(data) = data_text(event, SLACK_TEXT_CHARS - 6) {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{data}```")}}),
        );
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("event `{}` · attempt {attempt} · herald", event.id)}
    ]}));
    json!({"text": text, "blocks": blocks})
}

/// A Microsoft Teams incoming-webhook message carrying an Adaptive Card 1.4.
pub fn teams(event: &Event, text: Option<&str>) -> Value {
    let text = text.map_or_else(|| default_text(event), str::to_owned);
    let mut facts = vec![
        json!({"title": "Source", "value": event.source.as_deref().unwrap_or("-")}),
        json!({"title": "Time", "value": event.time_rfc3339()}),
        json!({"title": "Event", "value": event.id}),
    ];
    facts.extend(
        event
            .labels
            .iter()
            .map(|(k, v)| json!({"title": k, "value": v})),
    );
    let mut body = vec![
        json!({"type": "TextBlock", "text": event.event_type, "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": text, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(data) = data_text(event, 4000) {
        body.push(json!({"type": "TextBlock", "text": data, "fontType": "Monospace", "wrap": true, "isSubtle": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}
