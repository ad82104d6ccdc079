//! The HTTP request of one attempt: the body rendered in the subscription's
//! format, signed with this attempt's timestamp (and both secrets during a
//! rotation), herald's headers plus the subscription's. Shared by delivery
//! and by the synchronous test route, so both send exactly the same thing.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use time::OffsetDateTime;

use super::{
    http::{HttpError, Request},
    render::render,
    signature,
    task::DeliveryTask,
};
use crate::subscriptions::model::Subscription;

/// `default_timeout` applies unless the subscription sets its own.
pub fn signed_request(
    sub: &Subscription,
    task: &DeliveryTask,
    default_timeout: Duration,
) -> Result<Request, HttpError> {
    let url = reqwest::Url::parse(&sub.url)
        .map_err(|err| HttpError::Request(format!("invalid url: {err}")))?;
    let rendered = render(sub, task);
    let now = OffsetDateTime::now_utc();
    let timestamp = now.unix_timestamp();
    let signature = signature::sign(
        &sub.signing_secrets(now),
        &task.event.id,
        timestamp,
        &rendered.body,
    );

    let mut headers = HeaderMap::with_capacity(8 + sub.headers.len());
    for (name, value) in &sub.headers {
        // Validated when saved; a record edited by hand is skipped rather than sent broken.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(rendered.content_type),
    );
    insert(&mut headers, "webhook-id", &task.event.id);
    insert(&mut headers, "webhook-timestamp", &timestamp.to_string());
    insert(&mut headers, "webhook-signature", &signature);
    insert(&mut headers, "herald-event-type", &task.event.event_type);
    insert(&mut headers, "herald-attempt", &task.attempt.to_string());
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
