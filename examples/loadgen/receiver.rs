//! The webhook receiver every mode points herald (or the ceiling loop) at: an
//! axum server on an ephemeral loopback port that counts what it answers and,
//! given a [`Latencies`], timestamps each event's arrival.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;

use crate::stats::{Latencies, unix_nanos};

/// How the receiver answers.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// 204 at once.
    Accept,
    /// 204 after this long: a slow endpoint, or requests held in flight.
    Delay(Duration),
    /// 500 to a first attempt (`herald-attempt: 1`), 204 to any later one.
    FailFirst,
}

#[derive(Default)]
pub struct Counters {
    /// Requests answered 2xx.
    pub succeeded: AtomicU64,
    /// Requests answered 5xx.
    pub failed: AtomicU64,
    /// Requests received and not answered yet.
    pub open: AtomicU64,
}

impl Counters {
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

pub struct Receiver {
    pub url: String,
    pub counters: Arc<Counters>,
}

/// The part of an event the receiver reads: `data.seq` and `data.sent_ns`.
#[derive(Deserialize)]
struct Stamped {
    data: Option<Stamp>,
}

#[derive(Deserialize)]
struct Stamp {
    seq: u64,
    sent_ns: u64,
}

/// Starts a receiver; it runs until the process exits.
pub async fn start(
    behaviour: Behaviour,
    latencies: Option<Arc<Latencies>>,
) -> anyhow::Result<Receiver> {
    let counters = Arc::new(Counters::default());
    let state = counters.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (counters, latencies) = (state.clone(), latencies.clone());
        async move { answer(behaviour, &counters, latencies.as_deref(), &headers, &body).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Receiver { url, counters })
}

async fn answer(
    behaviour: Behaviour,
    counters: &Counters,
    latencies: Option<&Latencies>,
    headers: &HeaderMap,
    body: &[u8],
) -> StatusCode {
    // Arrival is the moment the request is here, before any deliberate delay.
    let arrived_ns = unix_nanos();
    let _open = Open::new(&counters.open);
    let status = match behaviour {
        Behaviour::Accept => StatusCode::NO_CONTENT,
        Behaviour::Delay(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::NO_CONTENT
        }
        Behaviour::FailFirst if is_first_attempt(headers) => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::FailFirst => StatusCode::NO_CONTENT,
    };
    if status.is_success() {
        counters.succeeded.fetch_add(1, Ordering::Relaxed);
        // Parsed in every mode with a recorder, so `direct` measures the same work.
        if let (Some(latencies), Ok(Stamped { data: Some(stamp) })) =
            (latencies, serde_json::from_slice::<Stamped>(body))
        {
            latencies.record(stamp.seq, stamp.sent_ns, arrived_ns);
        }
    } else {
        counters.failed.fetch_add(1, Ordering::Relaxed);
    }
    status
}

fn is_first_attempt(headers: &HeaderMap) -> bool {
    headers.get("herald-attempt").is_some_and(|v| v == "1")
}

/// Counts a request as open until it is answered or herald hangs up on it
/// (axum drops the handler's future then, and this guard with it).
struct Open<'a>(&'a AtomicU64);

impl<'a> Open<'a> {
    fn new(open: &'a AtomicU64) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
