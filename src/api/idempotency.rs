//! `Idempotency-Key` on `POST /v1/events`: a request repeated with the same
//! key within `api.idempotency_window` gets the first one's answer again and
//! publishes nothing, whichever API replica it reaches. The record lives in
//! Redis (`<rp>:idempotency:<sha256 of the key>`): `pending` while the first
//! request publishes (for at most `PENDING`, so an API killed half-way does
//! not block the key for the whole window), then its answer for the window.
//!
//! Without Redis the request is refused (503), not published unguarded: the
//! client asked not to publish twice, and can retry once Redis is back.

use std::time::Duration;

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::subscriptions::store::Store;

/// How long a first request may take to publish before its key is free again:
/// above a batch's publish confirms (`amqp.confirm_timeout`, 10 s by default).
const PENDING: Duration = Duration::from_secs(60);

/// Longest key accepted (Stripe's and the IETF draft's practice).
const MAX_KEY: usize = 255;

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Record {
    Pending { body: String },
    Done { body: String, answer: Value },
}

/// What the first request with a key left for the next.
pub enum Claim {
    /// This request is the first: publish, then [`Guard::done`].
    First(Guard),
    /// Answered before: this is its answer.
    Replay(Value),
}

/// The key of a request that is publishing; dropped without `done` (the
/// publish failed), it frees the key so the client's retry can publish.
pub struct Guard {
    conn: ConnectionManager,
    key: String,
    body: String,
    window: Duration,
    done: bool,
}

/// Claims `key` for a request whose body is `body`.
pub async fn claim(
    store: &Store,
    prefix: &str,
    key: &str,
    body: &[u8],
    window: Duration,
) -> Result<Claim, ApiError> {
    check_key(key)?;
    let redis_key = format!("{prefix}:idempotency:{:x}", Sha256::digest(key));
    let body = format!("{:x}", Sha256::digest(body));
    let mut conn = store.connection();
    let pending = serde_json::to_string(&Record::Pending { body: body.clone() })
        .expect("a record serialises");
    let options = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::NX)
        .with_expiration(redis::SetExpiry::PX(PENDING.as_millis() as u64));
    let claimed: Option<String> = conn
        .set_options(&redis_key, pending, options)
        .await
        .map_err(unavailable)?;
    if claimed.is_some() {
        return Ok(Claim::First(Guard {
            conn: conn.clone(),
            key: redis_key,
            body,
            window,
            done: false,
        }));
    }
    let stored: Option<String> = conn.get(&redis_key).await.map_err(unavailable)?;
    let record = stored.and_then(|s| serde_json::from_str::<Record>(&s).ok());
    match record {
        Some(Record::Done {
            body: first,
            answer,
        }) if first == body => Ok(Claim::Replay(answer)),
        Some(Record::Done { body: first, .. } | Record::Pending { body: first })
            if first != body =>
        {
            Err(ApiError::invalid(
                "Idempotency-Key",
                "was used with a different body; use a new key for a new request",
            ))
        }
        // Pending with this body, or expired between the two calls: the first
        // request has not answered yet.
        _ => Err(ApiError::conflict(
            "a request with this Idempotency-Key is still being published; retry in a moment",
        )),
    }
}

impl Guard {
    /// Keeps `answer` for the window: repeats of the request get it back. The
    /// events are published by now, so a failure here is only logged: the key
    /// stays pending until it expires, then a repeat would publish again.
    pub async fn done(mut self, answer: &Value) {
        self.done = true;
        let record = Record::Done {
            body: self.body.clone(),
            answer: answer.clone(),
        };
        let record = serde_json::to_string(&record).expect("a record serialises");
        let mut conn = self.conn.clone();
        let window = self.window.as_millis() as u64;
        if let Err(err) = conn.pset_ex::<_, _, ()>(&self.key, record, window).await {
            tracing::warn!(error = %err, "the answer of an idempotent request was not kept");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (mut conn, key) = (self.conn.clone(), std::mem::take(&mut self.key));
        // Best effort: if this fails, the key frees itself after PENDING.
        tokio::spawn(async move {
            let _: Result<(), _> = conn.del(key).await;
        });
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            &format!("must be 1 to {MAX_KEY} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn unavailable(err: redis::RedisError) -> ApiError {
    tracing::warn!(error = %err, "idempotency store unavailable");
    ApiError::unavailable(
        "idempotency store (Redis) unavailable; retry with the same Idempotency-Key",
    )
}
