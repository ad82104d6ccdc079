//! The request body of an attempt, by the subscription's format. `json` sends
//! the event's canonical JSON exactly as the task carries it: no re-encoding
//! on the hot path.

use bytes::Bytes;

use super::task::DeliveryTask;
use crate::subscriptions::model::{Format, Subscription};

pub struct Rendered {
    pub body: Bytes,
    pub content_type: &'static str,
}

pub fn render(sub: &Subscription, task: &DeliveryTask) -> Rendered {
    match sub.format {
        Format::Json => Rendered {
            body: task.body.clone(),
            content_type: "application/json",
        },
    }
}
