//! One scenario's world: herald workers run as a user runs them (the binary,
//! env config) against a broker and a Redis (shared or the test's own), with
//! their logs kept, plus the test's view of herald's queues and `/metrics`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use lapin::{
    Channel, Connection,
    options::{BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
};
use redis::AsyncCommands;
use serde_json::Value;

use super::ledger::{Ledger, Report};
use crate::support::{
    AMQP_URL, Message, REDIS_URL, TOKEN, eventually, process::Herald, receiver::Receiver,
    unique_prefix,
};

pub struct Lab {
    pub prefix: String,
    pub amqp_url: String,
    pub redis_url: String,
    env: Vec<(String, String)>,
    workers: Vec<Option<Herald>>,
    logs: tempfile::TempDir,
    http: reqwest::Client,
    reader: Option<(Connection, Channel)>,
    dead: Vec<Message>,
    /// Where `settle` reads on in the dead-letter log.
    dead_offset: u64,
    rejected: Vec<Message>,
}

impl Lab {
    /// On the shared broker and Redis, with a fresh prefix.
    pub fn new() -> Self {
        crate::support::init();
        Self {
            prefix: unique_prefix(),
            amqp_url: AMQP_URL.to_owned(),
            redis_url: REDIS_URL.to_owned(),
            env: Vec::new(),
            workers: Vec::new(),
            logs: tempfile::tempdir().expect("a temp dir"),
            http: reqwest::Client::new(),
            reader: None,
            dead: Vec::new(),
            dead_offset: 0,
            rejected: Vec::new(),
        }
    }

    pub fn amqp(mut self, url: String) -> Self {
        self.amqp_url = url;
        self
    }

    pub fn redis(mut self, url: String) -> Self {
        self.redis_url = url;
        self
    }

    /// A `HERALD__*` setting for every worker started from now on.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts one more worker (`herald serve`) and waits for `/readyz`; returns its index.
    pub async fn start_worker(&mut self) -> usize {
        let index = self.spawn_worker();
        self.worker(index).wait_ready().await;
        index
    }

    /// Starts `count` workers in the same instant, then waits until every one is ready.
    pub async fn start_workers_together(&mut self, count: usize) {
        let started: Vec<usize> = (0..count).map(|_| self.spawn_worker()).collect();
        let ready = started.iter().map(|&i| self.worker(i).wait_ready());
        futures_util::future::join_all(ready).await;
    }

    /// Starts one more worker without waiting for it; returns its index.
    fn spawn_worker(&mut self) -> usize {
        let index = self.workers.len();
        let log = std::fs::File::create(self.logs.path().join(format!("worker-{index}.log")))
            .expect("log file");
        let mut env: Vec<(&str, &str)> = vec![
            ("HERALD__AMQP__URL", &self.amqp_url),
            ("HERALD__REDIS__URL", &self.redis_url),
            ("HERALD__LOG__LEVEL", "info"),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let herald = Herald::start_with(&self.prefix, &env, Stdio::from(log));
        self.workers.push(Some(herald));
        index
    }

    pub fn worker(&self, index: usize) -> &Herald {
        self.workers[index].as_ref().expect("the worker runs")
    }

    /// The API of any running worker.
    pub fn api(&self) -> String {
        self.workers
            .iter()
            .flatten()
            .next()
            .expect("a worker runs")
            .api
            .clone()
    }

    /// SIGKILL, as the OOM killer or a node failure would.
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut herald) = self.workers[index].take() {
            herald.child.kill().expect("SIGKILL herald");
            let _ = herald.child.wait();
        }
    }

    pub fn running_workers(&self) -> usize {
        self.workers.iter().flatten().count()
    }

    /// Everything the workers wrote to stderr.
    pub fn logs(&self) -> String {
        (0..self.workers.len())
            .map(|i| {
                std::fs::read_to_string(self.logs.path().join(format!("worker-{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A worker that panicked is a bug whatever the fault was.
    pub fn assert_no_panics(&self) {
        let logs = self.logs();
        assert!(!logs.contains("panicked"), "a worker panicked:\n{logs}");
    }

    /// Creates a subscription through the API and waits until every running
    /// worker's snapshot has it; returns its signing secret.
    pub async fn subscribe(&self, body: Value) -> String {
        let name = body["name"].as_str().expect("a name").to_owned();
        let created = self
            .http
            .post(format!("{}/v1/subscriptions", self.api()))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("the API answers");
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        self.wait_snapshots().await;
        let secret = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/subscriptions/{name}/secret"),
            )
            .await;
        secret["secret"].as_str().expect("a secret").to_owned()
    }

    /// Calls the API of a running worker with the token; returns the JSON answer.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> Value {
        self.http
            .request(method, format!("{}{path}", self.api()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// Waits until every running worker's snapshot matches the store's counter.
    pub async fn wait_snapshots(&self) {
        let redis = redis::Client::open(self.redis_url.as_str()).unwrap();
        let key = format!("{}:subscriptions:version", self.prefix);
        let apis: Vec<String> = self
            .workers
            .iter()
            .flatten()
            .map(|h| h.api.clone())
            .collect();
        let http = self.http.clone();
        eventually(Duration::from_secs(10), "every snapshot current", || {
            let (redis, key, apis, http) = (redis.clone(), key.clone(), apis.clone(), http.clone());
            Box::pin(async move {
                let mut conn = redis.get_multiplexed_async_connection().await.ok()?;
                let version: Option<u64> = conn.get(&key).await.ok()?;
                for api in apis {
                    let ready: Value = http
                        .get(format!("{api}/readyz"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    if ready["snapshot_version"].as_u64() != Some(version.unwrap_or(0)) {
                        return None;
                    }
                }
                Some(())
            })
        })
        .await;
    }

    pub async fn metrics(&self, index: usize) -> String {
        self.http
            .get(format!("{}/metrics", self.worker(index).api))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .unwrap()
    }

    async fn reader(&mut self) -> anyhow::Result<&Channel> {
        // A missing queue closes the channel (404), not the connection.
        let usable = |(conn, channel): &(Connection, Channel)| {
            conn.status().connected() && channel.status().connected()
        };
        if !self.reader.as_ref().is_some_and(usable) {
            let conn = crate::support::connect_any(&self.amqp_url).await?;
            let channel = conn.create_channel().await?;
            self.reader = Some((conn, channel));
        }
        Ok(&self.reader.as_ref().expect("just connected").1)
    }

    /// Dead letters archived so far (read on from where the last read stopped).
    pub async fn count_dead_letters(&mut self) -> usize {
        if let Ok(dead) = self.read_dead_letters().await {
            self.dead.extend(dead);
        }
        self.dead.len()
    }

    /// The dead letters archived in `<p>.dead.log` since the last call.
    async fn read_dead_letters(&mut self) -> anyhow::Result<Vec<Message>> {
        let log = format!("{}.dead.log", self.prefix);
        let (read, next) =
            crate::support::read_stream_at(&self.amqp_url, &log, self.dead_offset, usize::MAX)
                .await?;
        self.dead_offset = next;
        Ok(read)
    }

    /// Takes whatever is in `<p>.<suffix>` now.
    async fn take_all(&mut self, suffix: &str) -> anyhow::Result<Vec<Message>> {
        let queue = format!("{}.{suffix}", self.prefix);
        let channel = self.reader().await?;
        let mut got = Vec::new();
        while let Some(m) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            got.push(Message {
                body: m.delivery.data.clone(),
                headers: m.delivery.properties.headers().clone().unwrap_or_default(),
            });
        }
        Ok(got)
    }

    /// Messages in `<p>.<suffix>` (a passive declare), or None when unreachable.
    pub async fn depth(&mut self, suffix: &str) -> Option<u32> {
        let queue = format!("{}.{suffix}", self.prefix);
        let channel = self.reader().await.ok()?;
        let q = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match q {
            Ok(q) => Some(q.message_count()),
            Err(_) => {
                self.reader = None; // a failed passive declare closes the channel
                None
            }
        }
    }

    /// Polls until every confirmed event reached every subscription (2xx) or
    /// `<p>.dead`, and every malformed one `<p>.rejected`, or `within` passes;
    /// returns the ledger's report (check it with `Report::check`).
    pub async fn settle(
        &mut self,
        ledger: &Ledger,
        receivers: &[&Receiver],
        within: Duration,
    ) -> Report {
        let started = Instant::now();
        loop {
            if let Ok(dead) = self.read_dead_letters().await {
                self.dead.extend(dead);
            }
            if let Ok(rejected) = self.take_all("rejected").await {
                self.rejected.extend(rejected);
            }
            let requests: Vec<_> = receivers.iter().flat_map(|r| r.requests()).collect();
            let mut report = ledger.reconcile(&requests, &self.dead, &self.rejected);
            report.drained_in = started.elapsed();
            if report.is_complete() || started.elapsed() > within {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every dead letter `settle` has taken so far.
    pub fn dead_letters(&self) -> &[Message] {
        &self.dead
    }

    /// Herald's work and delay queues are empty (I5), checked after `settle`.
    pub async fn assert_queues_empty(&mut self) {
        for suffix in ["events", "deliveries"] {
            let depth = self.depth(suffix).await;
            assert_eq!(depth, Some(0), "{}.{suffix} is not empty", self.prefix);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let notable: Vec<&str> = logs
                .lines()
                .filter(|l| !l.contains("delivery attempt"))
                .collect();
            let tail = &notable[notable.len().saturating_sub(60)..];
            eprintln!("worker log lines but attempts:\n{}", tail.join("\n"));
        }
    }
}

/// A subscription body pointed at `receiver` under its own path segment.
pub fn hook(name: &str, receiver: &Receiver) -> Value {
    serde_json::json!({"name": name, "url": format!("{}/{name}", receiver.url()), "events": ["chaos.*"]})
}
