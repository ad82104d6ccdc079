//! The HTTP request of one attempt: URL and header templates rendered, the
//! body rendered in the subscription's format, signed with this attempt's
//! timestamp (and both secrets during a rotation), herald's headers plus the
//! subscription's. Shared by delivery and the synchronous test route, so both
//! send exactly the same thing.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use time::OffsetDateTime;

use super::{http::Request, render::render, task::DeliveryTask};
use crate::subscriptions::{
    model::Subscription,
    signature,
    template::{Context, RenderError, Templates},
};

/// `default_timeout` applies unless the subscription sets its own; `templates`
/// are its compiled templates (`None` when nothing is templated).
pub fn signed_request(
    sub: &Subscription,
    templates: Option<&Templates>,
    task: &DeliveryTask,
    default_timeout: Duration,
) -> Result<Request, RenderError> {
    let ctx = templates.map(|_| Context::new(sub, &task.event, task.attempt));
    let rendered_url = match (templates, &ctx) {
        (Some(t), Some(ctx)) => t.url(ctx)?,
        _ => None,
    };
    let url = reqwest::Url::parse(rendered_url.as_deref().unwrap_or(&sub.url))
        .map_err(|err| RenderError::Template(format!("invalid url: {err}")))?;
    let rendered = render(sub, templates, task, ctx.as_ref())?;
    let now = OffsetDateTime::now_utc();
    let timestamp = now.unix_timestamp();
    let signature = signature::sign(
        &sub.signing_secrets(now),
        &task.event.id,
        timestamp,
        &rendered.body,
    );

    let mut headers = HeaderMap::with_capacity(8 + sub.headers.len() + rendered.headers.len());
    for (name, value) in &sub.headers {
        let rendered_value = match (templates, &ctx) {
            (Some(t), Some(ctx)) => t.header(name, ctx)?,
            _ => None,
        };
        let value = rendered_value.as_deref().unwrap_or(value);
        // Names were validated when saved; a rendered value must still be a valid header.
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RenderError::Template(format!("header {name:?} is not a valid name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            RenderError::Template(format!("header {name} renders to an invalid value"))
        })?;
        headers.insert(name, value);
    }
    let content_type = HeaderValue::from_str(&rendered.content_type)
        .map_err(|_| RenderError::Template("content_type is not a valid header value".into()))?;
    headers.insert(CONTENT_TYPE, content_type);
    headers.extend(rendered.headers);
    insert(&mut headers, "webhook-id", &task.event.id);
    // Numbers go straight into their header values, with no String between.
    let timestamp = HeaderValue::from(timestamp);
    headers.insert(HeaderName::from_static("webhook-timestamp"), timestamp);
    insert(&mut headers, "webhook-signature", &signature);
    insert(&mut headers, "herald-event-type", &task.event.event_type);
    let attempt = HeaderValue::from(task.attempt);
    headers.insert(HeaderName::from_static("herald-attempt"), attempt);
    Ok(Request {
        method: sub.method.as_reqwest(),
        url,
        headers,
        body: rendered.body,
        timeout: sub.timeout.unwrap_or(default_timeout),
    })
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
