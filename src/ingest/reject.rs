//! Invalid events leave the pipeline here: moved to `<p>.rejected` with an
//! `x-herald-error` header saying why, confirmed, then acked. A bad message
//! never crashes or stalls a worker, and is never silently dropped.

use crate::broker::{
    publisher::{Headers, PublishError, Publisher},
    topology::Topology,
};

pub const ERROR_HEADER: &str = "x-herald-error";

pub async fn reject(
    publisher: &Publisher,
    topology: &Topology,
    body: &[u8],
    error: &str,
) -> Result<(), PublishError> {
    let headers = Headers::new().text(ERROR_HEADER, error).build();
    publisher
        .publish("", topology.rejected(), body, headers)
        .await
}
