//! Reading the dead-letter log. The entries of `<p>.dead.log` that no record
//! in `<p>.dead.settled` names (by offset) are the dead letters waiting; they
//! are read oldest first, filtered, and paged by offset. Reading takes nothing
//! off a queue and changes no delivery count, so it is safe while workers run.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    broker::{consumer::Message, session::Session, topology::Topology},
    dead_letter::{
        ATTEMPTS_HEADER, DIED_AT_HEADER, DeadReason, LAST_ERROR_HEADER, LAST_STATUS_HEADER,
        REASON_HEADER, SUBSCRIPTION_HEADER,
    },
    delivery::task,
};

/// `x-herald-settles` on a settled record: the log offset it settles.
pub const SETTLES_HEADER: &str = "x-herald-settles";
/// `x-herald-settled-as`: `replayed` or `purged`.
pub const SETTLED_AS_HEADER: &str = "x-herald-settled-as";

/// One dead letter as the log keeps it, and as `herald dead list` and
/// `GET /v1/dead` show it (without the body). A field the dead letter does not
/// carry is `null`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DeadLetter)]
pub struct Record {
    /// Its place in the log (`<p>.dead.log`), oldest first: what a cursor and
    /// a settled record name.
    pub offset: u64,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub subscription: Option<String>,
    /// `x-herald-reason`: `max_attempts`, `gone`, `subscription_disabled`,
    /// `forbidden_target`, `render_error` or `poison`.
    pub reason: Option<String>,
    pub attempts: Option<i64>,
    /// The HTTP status of the last attempt; `null` when none answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// When the delivery was given up (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub died_at: Option<OffsetDateTime>,
    /// The event as the delivery carried it.
    #[serde(skip)]
    #[schema(ignore)]
    pub body: Bytes,
}

impl Record {
    fn read(offset: u64, message: Message) -> Self {
        let event = serde_json::from_slice::<Value>(&message.body).ok();
        let field = |name: &str| {
            let value = event.as_ref()?.get(name)?.as_str()?;
            Some(value.to_owned())
        };
        let died_at = message.header_int(DIED_AT_HEADER).and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        });
        Self {
            offset,
            event_id: field("id"),
            event_type: field("type"),
            // A task the broker gave up on still names its subscription in the task's header.
            subscription: message
                .header_text(SUBSCRIPTION_HEADER)
                .or_else(|| message.header_text(task::SUBSCRIPTION_HEADER)),
            reason: message.header_text(REASON_HEADER),
            attempts: message.header_int(ATTEMPTS_HEADER),
            last_status: message.header_int(LAST_STATUS_HEADER),
            last_error: message.header_text(LAST_ERROR_HEADER),
            died_at,
            body: message.body,
        }
    }

    /// What listing shows of it, as JSON.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).expect("a Record always serialises")
    }
}

/// Which dead letters to list, replay or purge; empty selects all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subscription: Option<String>,
    pub reason: Option<DeadReason>,
    /// Only these events (every subscription's dead letter of each).
    pub event_ids: HashSet<String>,
}

impl Filter {
    fn selects(&self, record: &Record) -> bool {
        let subscription = self.subscription.as_ref();
        subscription.is_none_or(|s| record.subscription.as_ref() == Some(s))
            && self
                .reason
                .is_none_or(|r| record.reason.as_deref() == Some(r.as_str()))
            && (self.event_ids.is_empty()
                || record
                    .event_id
                    .as_ref()
                    .is_some_and(|id| self.event_ids.contains(id)))
    }
}

/// One page of a listing.
pub struct Page {
    pub records: Vec<Record>,
    /// Where the next page starts; `None` when this one reached the end of the log.
    pub next: Option<u64>,
}

/// Up to `limit` waiting dead letters that `filter` selects, from offset `from` on.
pub async fn list(
    session: &Session,
    topology: &Topology,
    filter: &Filter,
    from: u64,
    limit: usize,
) -> anyhow::Result<Page> {
    let mut records = scan(session, topology, filter, from, Some(limit + 1)).await?;
    // One more than asked for says whether another page exists.
    let next = (records.len() > limit).then(|| records[limit].offset);
    records.truncate(limit);
    Ok(Page { records, next })
}

/// Every waiting dead letter `filter` selects, at most `limit`: what a replay
/// or a purge acts on.
pub async fn select(
    session: &Session,
    topology: &Topology,
    filter: &Filter,
    limit: Option<usize>,
) -> anyhow::Result<Vec<Record>> {
    scan(session, topology, filter, 0, limit).await
}

async fn scan(
    session: &Session,
    topology: &Topology,
    filter: &Filter,
    from: u64,
    limit: Option<usize>,
) -> anyhow::Result<Vec<Record>> {
    let settled = settled(session, topology).await?;
    let mut records = Vec::new();
    let Some(mut log) = session.read_stream(&topology.dead_log(), from).await? else {
        return Ok(records);
    };
    while limit.is_none_or(|limit| records.len() < limit) {
        let Some(entry) = log.next().await? else {
            break;
        };
        if entry.offset < from || settled.contains(&entry.offset) {
            continue;
        }
        let record = Record::read(entry.offset, entry.message);
        if filter.selects(&record) {
            records.push(record);
        }
    }
    log.close().await;
    Ok(records)
}

/// The log offsets that were replayed or purged.
async fn settled(session: &Session, topology: &Topology) -> anyhow::Result<HashSet<u64>> {
    let mut offsets = HashSet::new();
    let Some(mut records) = session.read_stream(&topology.dead_settled(), 0).await? else {
        return Ok(offsets);
    };
    while let Some(entry) = records.next().await? {
        let settles = entry.message.header_int(SETTLES_HEADER);
        offsets.extend(settles.and_then(|n| u64::try_from(n).ok()));
    }
    records.close().await;
    Ok(offsets)
}
