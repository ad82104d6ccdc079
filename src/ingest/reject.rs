//! Invalid events leave the pipeline here: moved to `<p>.rejected` with an
//! `x-herald-error` header saying why, confirmed, then acked. A bad message
//! never crashes or stalls a worker, and is never silently dropped.

use crate::{
    broker::{
        consumer::Message,
        publisher::{Destination, PublishError, Publisher},
        topology::Topology,
    },
    field_error::FieldError,
    metrics::RejectReason,
};

pub const ERROR_HEADER: &str = "x-herald-error";

/// The message keeps its headers (a binary-mode CloudEvent's attributes are there).
pub async fn reject(
    publisher: &Publisher,
    topology: &Topology,
    message: &Message,
    error: &str,
) -> Result<(), PublishError> {
    let headers = message.headers().text(ERROR_HEADER, error);
    let to = Destination::Queue(topology.rejected());
    publisher.publish(to, &message.body, headers).await
}

/// Why an envelope was refused, for `herald_events_rejected_total{reason}`.
pub fn reason(err: &FieldError) -> RejectReason {
    match err.field.as_str() {
        "body" => RejectReason::InvalidJson,
        _ => RejectReason::InvalidEnvelope,
    }
}
