//! Replaying and purging dead letters. A replay puts each chosen dead letter
//! back into delivery as a first attempt (a task in `<p>.deliveries`; an event
//! RabbitMQ gave up on before it had a subscription goes back to `<p>.events`),
//! confirmed, and only then records it settled in `<p>.dead.settled`: a replay
//! killed half-way loses nothing and replays again at most what was in flight.
//! A purge records the chosen dead letters settled and sends nothing.

use futures_util::future::try_join_all;

use super::log::{Record, SETTLED_AS_HEADER, SETTLES_HEADER};
use crate::{
    broker::{
        headers::Headers,
        publisher::{Destination, PublishError},
        session::Session,
        topology::Topology,
    },
    delivery::task,
    event,
    subscriptions::store::{Store, StoreError},
};

/// Dead letters replayed (or purged) at once: what a kill can duplicate.
const IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Some chosen dead letters cannot be replayed; nothing was.
    #[error("nothing replayed: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Replays `records` (from `log::select`), all or none: a dead letter whose
/// subscription is disabled or deleted refuses the whole replay, before
/// anything is sent.
pub async fn replay(
    session: &Session,
    topology: &Topology,
    store: &Store,
    records: &[Record],
) -> Result<(), ReplayError> {
    refusals(store, records).await?;
    settle(session, topology, records, Settled::Replayed).await?;
    Ok(())
}

/// Records `records` (from `log::select`) as purged.
pub async fn purge(
    session: &Session,
    topology: &Topology,
    records: &[Record],
) -> Result<(), ReplayError> {
    settle(session, topology, records, Settled::Purged).await?;
    Ok(())
}

/// Why each dead letter that cannot be replayed cannot, if any cannot.
async fn refusals(store: &Store, records: &[Record]) -> Result<(), ReplayError> {
    let mut refused = Vec::new();
    let mut checked = Vec::new();
    for record in records {
        let Some(name) = &record.subscription else {
            if event::decode(&record.body).is_err() {
                refused.push(format!(
                    "the dead letter at offset {} names no subscription and is not an event; purge it instead",
                    record.offset
                ));
            }
            continue;
        };
        if checked.contains(name) {
            continue;
        }
        checked.push(name.clone());
        match store.get(name).await? {
            None => refused.push(format!("subscription `{name}` does not exist any more")),
            Some((sub, _)) if !sub.enabled => refused.push(format!(
                "subscription `{name}` is disabled; enable it first (PATCH /v1/subscriptions/{name} {{\"enabled\": true}})"
            )),
            Some(_) => {}
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ReplayError::Refused(refused))
    }
}

#[derive(Clone, Copy)]
enum Settled {
    Replayed,
    Purged,
}

impl Settled {
    fn as_str(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::Purged => "purged",
        }
    }
}

async fn settle(
    session: &Session,
    topology: &Topology,
    records: &[Record],
    how: Settled,
) -> Result<(), PublishError> {
    if records.is_empty() {
        return Ok(());
    }
    let settled = topology.dead_settled();
    session.publisher().declare_stream(&settled).await?;
    for batch in records.chunks(IN_FLIGHT) {
        let settling = batch.iter().map(|record| async {
            if let Settled::Replayed = how {
                resend(session, topology, record).await?;
            }
            let headers = Headers::new()
                .int(
                    SETTLES_HEADER,
                    i64::try_from(record.offset).unwrap_or(i64::MAX),
                )
                .text(SETTLED_AS_HEADER, how.as_str());
            let to = Destination::Queue(&settled);
            session.publisher().publish(to, &[], headers).await
        });
        try_join_all(settling).await?;
    }
    Ok(())
}

/// Sends a dead letter back as a first attempt.
async fn resend(
    session: &Session,
    topology: &Topology,
    record: &Record,
) -> Result<(), PublishError> {
    let publisher = session.publisher();
    match &record.subscription {
        Some(name) => {
            let to = Destination::Queue(topology.deliveries());
            publisher
                .publish(to, &record.body, task::headers(name, 1))
                .await
        }
        None => {
            // Checked before: an event nobody could fan out (a poison event).
            let event_type = record.event_type.as_deref().unwrap_or_default();
            let to = Destination::Exchange {
                name: topology.events(),
                routing_key: event_type,
            };
            publisher.publish(to, &record.body, Headers::new()).await
        }
    }
}
