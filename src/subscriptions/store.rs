//! The Redis side of subscriptions: a hash `<rp>:subscriptions` (name -> JSON),
//! a change counter `<rp>:subscriptions:version`, and a pub/sub notice on
//! `<rp>:subscriptions:changed`. Every write is one Lua script, so the hash,
//! the counter and the notice never disagree. Beside them, the hash
//! `<rp>:subscriptions:failing` (name -> unix ms) holds when each failing
//! subscription started failing, for auto-disable.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use redis::{
    AsyncCommands, Client, ClientTlsConfig, Script, TlsCertificates,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::model::Subscription;
use crate::config::{ConfigError, RedisConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("subscription store unavailable")]
    Unavailable(#[from] redis::RedisError),
    #[error("subscription `{0}` has an unreadable record in Redis")]
    Corrupt(String, #[source] serde_json::Error),
    #[error(transparent)]
    Tls(#[from] ConfigError),
}

/// How a write treats what is already stored under the name.
pub enum Expect<'a> {
    /// Create only: fails when the name exists.
    Absent,
    /// Replace only if the stored JSON is still exactly this (read-modify-write).
    Current(&'a str),
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Replaced,
    /// The expectation failed: the name exists (`Absent`), or changed since it was read (`Current`).
    Conflict,
}

// KEYS: hash, version. ARGV: name, json, mode (absent|current), expected, channel.
// Returns -1 on conflict, 0 when created, 1 when replaced.
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if ARGV[3] == 'absent' and current then return -1 end
        if ARGV[3] == 'current' and current ~= ARGV[4] then return -1 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        local version = redis.call('INCR', KEYS[2])
        redis.call('PUBLISH', ARGV[5], version)
        if current then return 1 else return 0 end
        ",
    )
});

// KEYS: hash, version, failing. ARGV: name, channel. Returns 1 when deleted.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
        redis.call('HDEL', KEYS[3], ARGV[1])
        local version = redis.call('INCR', KEYS[2])
        redis.call('PUBLISH', ARGV[2], version)
        return 1
        ",
    )
});

// KEYS: failing. ARGV: name, now (ms). Keeps an earlier start; returns the start.
static MARK_FAILING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
        return tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
        ",
    )
});

#[derive(Clone)]
pub struct Store {
    client: Client,
    conn: ConnectionManager,
    hash: String,
    version: String,
    channel: String,
    failing: String,
}

/// Everything stored, read atomically with the counter it belongs to.
pub struct Contents {
    /// `None` when the counter is missing: a store that was never written, or was wiped.
    pub version: Option<u64>,
    pub records: HashMap<String, String>,
}

impl Store {
    /// Connects lazily: a Redis that is down at start-up is retried on every call.
    pub fn new(redis: &RedisConfig) -> Result<Self, StoreError> {
        let prefix = &redis.prefix;
        let client = client(redis)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            conn,
            hash: format!("{prefix}:subscriptions"),
            version: format!("{prefix}:subscriptions:version"),
            channel: format!("{prefix}:subscriptions:changed"),
            failing: format!("{prefix}:subscriptions:failing"),
        })
    }

    /// The shared connection, for records kept beside the subscriptions
    /// (`POST /v1/events`' idempotency keys).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for the snapshot refresher's pub/sub connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The pub/sub channel every write notifies.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn get(&self, name: &str) -> Result<Option<(Subscription, String)>, StoreError> {
        let raw: Option<String> = self.conn.clone().hget(&self.hash, name).await?;
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map(|sub| (sub, raw))
                .map_err(|e| StoreError::Corrupt(name.to_owned(), e))
        })
        .transpose()
    }

    /// Every subscription, by name.
    pub async fn list(&self) -> Result<Vec<Subscription>, StoreError> {
        let records = self.records().await?;
        Ok(records.into_iter().map(|(sub, _)| sub).collect())
    }

    /// Every subscription by name, each with the stored JSON a conditional write expects.
    pub async fn records(&self) -> Result<Vec<(Subscription, String)>, StoreError> {
        let all: HashMap<String, String> = self.conn.clone().hgetall(&self.hash).await?;
        let mut records = all
            .into_iter()
            .map(|(name, raw)| match serde_json::from_str(&raw) {
                Ok(sub) => Ok((sub, raw)),
                Err(e) => Err(StoreError::Corrupt(name, e)),
            })
            .collect::<Result<Vec<(Subscription, String)>, _>>()?;
        records.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(records)
    }

    pub async fn write(
        &self,
        sub: &Subscription,
        expect: Expect<'_>,
    ) -> Result<Written, StoreError> {
        let json = serde_json::to_string(sub).expect("a Subscription always serialises");
        let (mode, expected) = match expect {
            Expect::Absent => ("absent", ""),
            Expect::Current(raw) => ("current", raw),
        };
        let result: i64 = WRITE
            .key(&self.hash)
            .key(&self.version)
            .arg(&sub.name)
            .arg(json)
            .arg(mode)
            .arg(expected)
            .arg(&self.channel)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match result {
            0 => Written::Created,
            1 => Written::Replaced,
            _ => Written::Conflict,
        })
    }

    /// Returns whether the name existed.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted: i64 = DELETE
            .key(&self.hash)
            .key(&self.version)
            .key(&self.failing)
            .arg(name)
            .arg(&self.channel)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(deleted == 1)
    }

    /// Read-modify-write with retries on concurrent changes. `change` returns
    /// `Ok(false)` to leave the record as it is. `Ok(None)` when the name does not exist.
    pub async fn update<E>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Subscription) -> Result<bool, E>,
    ) -> Result<Option<Result<Subscription, E>>, StoreError> {
        for _ in 0..10 {
            let Some((mut sub, raw)) = self.get(name).await? else {
                return Ok(None);
            };
            match change(&mut sub) {
                Err(e) => return Ok(Some(Err(e))),
                Ok(false) => return Ok(Some(Ok(sub))),
                Ok(true) => {}
            }
            if self.write(&sub, Expect::Current(&raw)).await? != Written::Conflict {
                return Ok(Some(Ok(sub)));
            }
        }
        Err(StoreError::Unavailable(redis::RedisError::from((
            redis::ErrorKind::Client,
            "too many concurrent changes to one subscription",
        ))))
    }

    /// Records that `name` has been failing since `since_ms`, unless it
    /// already was; returns since when it has been failing.
    pub async fn mark_failing(&self, name: &str, since_ms: i64) -> Result<i64, StoreError> {
        Ok(MARK_FAILING
            .key(&self.failing)
            .arg(name)
            .arg(since_ms)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Since when `name` has been failing (unix ms), if it is.
    pub async fn failing_since(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.clone().hget(&self.failing, name).await?)
    }

    /// `name` succeeded (or was disabled): its failing clock stops.
    pub async fn clear_failing(&self, name: &str) -> Result<(), StoreError> {
        let _: i64 = self.conn.clone().hdel(&self.failing, name).await?;
        Ok(())
    }

    /// The counter alone: the cheap question "did anything change?".
    pub async fn version(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.conn.clone().get(&self.version).await?)
    }

    /// Counter and hash in one transaction, so a snapshot never mixes two versions.
    pub async fn contents(&self) -> Result<Contents, StoreError> {
        let (version, records): (Option<u64>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .get(&self.version)
            .hgetall(&self.hash)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Contents { version, records })
    }
}

/// A client for `redis.url`, with the `[tls]` files when it is `rediss://`.
fn client(redis: &RedisConfig) -> Result<Client, StoreError> {
    let url = redis.url.expose();
    let files = redis.tls.read()?;
    if !url.starts_with("rediss://") || (files.ca.is_none() && files.identity.is_none()) {
        // rediss:// alone trusts the system's roots.
        return Ok(Client::open(url)?);
    }
    let certificates = TlsCertificates {
        client_tls: files
            .identity
            .map(|(client_cert, client_key)| ClientTlsConfig {
                client_cert,
                client_key,
            }),
        root_cert: files.ca.map(with_system_roots),
    };
    Ok(Client::build_with_tls(url, certificates)?)
}

/// `ca` and the system's roots as one PEM bundle: roots given to the redis
/// crate replace the system's, and `tls.ca_file` is meant to add to them.
fn with_system_roots(ca: String) -> Vec<u8> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    let mut pem = ca.into_bytes();
    pem.push(b'\n');
    for cert in rustls_native_certs::load_native_certs().certs {
        // One unusable system certificate would fail the whole bundle there.
        if rustls::RootCertStore::empty().add(cert.clone()).is_err() {
            continue;
        }
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in STANDARD.encode(cert.as_ref()).as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}
