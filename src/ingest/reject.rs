//! Invalid events leave the pipeline here: moved to `<p>.rejected` with an
//! `x-herald-error` header saying why, confirmed, then acked. A bad message
//! never crashes or stalls a worker, and is never silently dropped.

use crate::{
    broker::{
        headers::Headers,
        publisher::{Destination, PublishError, Publisher},
        topology::Topology,
    },
    field_error::FieldError,
    metrics::RejectReason,
};

pub const ERROR_HEADER: &str = "x-herald-error";

pub async fn reject(
    publisher: &Publisher,
    topology: &Topology,
    body: &[u8],
    error: &str,
) -> Result<(), PublishError> {
    let headers = Headers::new().text(ERROR_HEADER, error);
    publisher
        .publish(Destination::Queue(topology.rejected()), body, headers)
        .await
}

/// Why an envelope was refused, for `herald_events_rejected_total{reason}`.
pub fn reason(err: &FieldError) -> RejectReason {
    match err.field.as_str() {
        "body" => RejectReason::InvalidJson,
        _ => RejectReason::InvalidEnvelope,
    }
}
