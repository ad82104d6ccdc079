//! The test harness: `TestApp` runs the real `App` against the real RabbitMQ
//! and Redis with its own `test-<uuid>` prefixes and millisecond timings;
//! helpers publish events, call the API and read herald's queues.

pub mod fault_http;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod services;

use std::{
    net::{SocketAddr, TcpListener},
    sync::Once,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use herald::{
    app::{App, Role},
    broker::topology::Topology,
    config::{Config, NodeUrls, QueueType, SecretString, SecretUrl},
    delivery::retry::RetryPolicy,
};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=5";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
pub const TOKEN: &str = "test-token-0123456789";

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "herald=info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A fresh `test-<uuid>` for both prefixes: tests share a broker and a Redis, never data.
pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// The defaults with test settings: classic queues, fast retries, port 0.
pub fn test_config(prefix: &str) -> Config {
    let mut config = Config::defaults();
    config.amqp.url = NodeUrls::new(AMQP_URL);
    config.amqp.prefix = prefix.to_owned();
    config.amqp.queue_type = QueueType::Classic;
    config.amqp.confirm_timeout = Duration::from_secs(5);
    config.redis.url = SecretUrl::new(REDIS_URL);
    config.redis.prefix = prefix.to_owned();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.token = SecretString::new(TOKEN);
    config.worker.shutdown_timeout = Duration::from_secs(5);
    config.delivery.timeout = Duration::from_secs(2);
    config.delivery.max_attempts = 4.try_into().unwrap();
    config.delivery.retry_initial = Duration::from_millis(200);
    config.delivery.retry_multiplier = 2.0;
    config.delivery.retry_max_delay = Duration::from_secs(2);
    // Receivers listen on 127.0.0.1; the SSRF tests turn this back off.
    config.delivery.allow_private_targets = true;
    config
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some` or `within` passes.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> BoxFuture<'static, Option<T>>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct TestApp {
    pub config: Config,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub amqp: Broker,
    /// The dead-letter log's offset `take_dead` reads on from.
    dead_read: std::sync::Mutex<u64>,
    cancel: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The prefix was made for this app (not shared with another by the test):
    /// its queues go with it.
    owns_prefix: bool,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Builds and runs the real `App` with `adjust` applied to the test config; waits for /readyz.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init();
        let prefix = unique_prefix();
        let mut config = test_config(&prefix);
        adjust(&mut config);
        let owns_prefix = config.amqp.prefix == prefix;
        let app = App::build(config.clone(), Role::All)
            .await
            .expect("the app builds");
        let addr = app.api_addr();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.run(cancel.clone()));
        let test = Self {
            amqp: Broker::connect(&config.amqp.prefix).await,
            config,
            addr,
            http: reqwest::Client::new(),
            dead_read: std::sync::Mutex::new(0),
            cancel,
            handle: Some(handle),
            owns_prefix,
        };
        test.wait_ready().await;
        test
    }

    pub fn prefix(&self) -> &str {
        &self.config.amqp.prefix
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        let (http, url) = (self.http.clone(), self.url("/readyz"));
        eventually(Duration::from_secs(20), "/readyz 200", || {
            let (http, url) = (http.clone(), url.clone());
            Box::pin(async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            })
        })
        .await;
    }

    /// Calls the API with the token; returns the status and the JSON body (Null when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// Creates a subscription, waits until the worker's snapshot has it, returns its secret.
    pub async fn create_subscription(&self, body: Value) -> String {
        let name = body["name"].as_str().unwrap().to_owned();
        let (status, reply) = self
            .api(reqwest::Method::POST, "/v1/subscriptions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        self.wait_snapshot_current().await;
        let (_, secret) = self
            .api(
                reqwest::Method::GET,
                &format!("/v1/subscriptions/{name}/secret"),
                None,
            )
            .await;
        secret["secret"].as_str().unwrap().to_owned()
    }

    /// Waits until the snapshot reflects the store's change counter.
    pub async fn wait_snapshot_current(&self) {
        let redis = redis::Client::open(self.config.redis.url.expose()).unwrap();
        let key = format!("{}:subscriptions:version", self.config.redis.prefix);
        let (http, url) = (self.http.clone(), self.url("/readyz"));
        eventually(Duration::from_secs(5), "the snapshot to catch up", || {
            let (http, url, redis, key) = (http.clone(), url.clone(), redis.clone(), key.clone());
            Box::pin(async move {
                let mut conn = redis.get_multiplexed_async_connection().await.ok()?;
                let version: Option<u64> = conn.get(&key).await.ok()?;
                let ready: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                (ready["snapshot_version"].as_u64() == Some(version.unwrap_or(0))).then_some(())
            })
        })
        .await;
    }

    /// Publishes an event to `<p>.events` as a producer would, with a confirm.
    pub async fn publish(&self, event: Value) {
        let routing_key = event["type"].as_str().unwrap_or("unknown").to_owned();
        self.amqp
            .publish_event(&routing_key, &serde_json::to_vec(&event).unwrap())
            .await;
    }

    /// Waits for `n` messages on one of herald's queues (taken off it).
    pub async fn take(&self, queue_suffix: &str, n: usize, within: Duration) -> Vec<Message> {
        self.amqp
            .take(&format!("{}.{queue_suffix}", self.prefix()), n, within)
            .await
    }

    /// Waits for the next `n` dead letters in the log (`<p>.dead.log`), in order;
    /// the log keeps them, and the next call reads on after them.
    pub async fn take_dead(&self, n: usize, within: Duration) -> Vec<Message> {
        let stream = format!("{}.dead.log", self.prefix());
        let from = *self.dead_read.lock().unwrap();
        let (got, next) = self.amqp.wait_for_stream(&stream, from, n, within).await;
        *self.dead_read.lock().unwrap() = next;
        got
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the app as SIGTERM would and waits for it to end; its queues
    /// stay, for the test to go on with (the expiry policy reaps them).
    pub async fn stop(mut self) {
        self.owns_prefix = false;
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
        if self.owns_prefix {
            // Left to the expiry policy, a whole run's queues and streams live
            // for 10 minutes, each holding broker file descriptors: enough to
            // exhaust a broker's default 1024 (and break it) in one run.
            let queues = queues_of(&self.config);
            let _ = std::thread::spawn(move || delete_queues(queues)).join();
        }
    }
}

/// Every queue and stream herald declares with `config`.
fn queues_of(config: &Config) -> Vec<String> {
    let topology = Topology::new(
        &config.amqp.prefix,
        config.amqp.queue_type,
        config.amqp.delivery_limit.get(),
        RetryPolicy::from_config(&config.delivery).buckets(),
    );
    let mut queues = topology.queues();
    queues.extend([topology.dead_log(), topology.dead_settled()]);
    queues
}

/// Deletes `queues` (missing ones are fine) on a connection and runtime of its own.
fn delete_queues(queues: Vec<String>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await else {
            return;
        };
        for queue in queues {
            // A channel each: a refused delete closes the channel it was asked on.
            let Ok(channel) = conn.create_channel().await else {
                break;
            };
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = channel.close(200, "deleted".into()).await;
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

/// A message read back from one of herald's queues.
#[derive(Debug)]
pub struct Message {
    pub body: Vec<u8>,
    pub headers: FieldTable,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        match self.headers.inner().get(name)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            AMQPValue::LongLongInt(n) => Some(n.to_string()),
            AMQPValue::LongInt(n) => Some(n.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The test's own AMQP connection: a producer and a queue reader.
pub struct Broker {
    pub conn: Connection,
    channel: Channel,
    exchange: String,
}

impl Broker {
    pub async fn connect(prefix: &str) -> Self {
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            conn,
            channel,
            exchange: format!("{prefix}.events"),
        }
    }

    pub async fn publish_event(&self, routing_key: &str, body: &[u8]) {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        self.publish_with(routing_key, body, properties).await;
    }

    /// Publishes with the producer's own properties (headers, content type).
    pub async fn publish_with(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            confirm.is_ack() && confirm.take_message().is_none(),
            "the event was not routed"
        );
    }

    /// Waits until the stream holds `n` entries from offset `from` on; returns
    /// them and the offset after the last.
    pub async fn wait_for_stream(
        &self,
        stream: &str,
        mut from: u64,
        n: usize,
        within: Duration,
    ) -> (Vec<Message>, u64) {
        let deadline = Instant::now() + within;
        let (mut got, mut last_error) = (Vec::new(), None);
        loop {
            // A stream the worker has only just declared may refuse a
            // consumer for a moment; that is worth another look, not a panic.
            match read_stream(stream, from, n - got.len()).await {
                Ok((read, next)) => {
                    from = next;
                    got.extend(read);
                }
                Err(error) => last_error = Some(error),
            }
            if got.len() >= n {
                return (got, from);
            }
            assert!(
                Instant::now() < deadline,
                "{stream}: got {} of {n} entries within {within:?} (last error: {last_error:?})",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn take(&self, queue: &str, n: usize, within: Duration) -> Vec<Message> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n {
            let message = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            match message {
                Some(m) => got.push(Message {
                    body: m.delivery.data.clone(),
                    headers: m.delivery.properties.headers().clone().unwrap_or_default(),
                }),
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "{queue}: got {} of {n} messages within {within:?}",
                        got.len()
                    );
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        got
    }
}

/// Up to `max` entries of the stream `stream` from offset `from` on, read until
/// it has been quiet for a moment, and the offset to read on from. Nothing
/// when the stream does not exist (yet). Streams keep what is read. On a
/// connection of its own: a stream that is not ready yet fails the connection.
pub async fn read_stream(
    stream: &str,
    from: u64,
    max: usize,
) -> anyhow::Result<(Vec<Message>, u64)> {
    read_stream_at(AMQP_URL, stream, from, max).await
}

/// [`read_stream`] on the broker (or any node of the cluster) at `urls`.
pub async fn read_stream_at(
    urls: &str,
    stream: &str,
    from: u64,
    max: usize,
) -> anyhow::Result<(Vec<Message>, u64)> {
    let conn = connect_any(urls).await?;
    let read = read_stream_on(&conn, stream, from, max).await;
    let _ = conn.close(200, "read".into()).await;
    read
}

/// A connection to the first node that answers of `urls`, one URL or several
/// separated by commas (as `HERALD__AMQP__URL` takes them).
pub async fn connect_any(urls: &str) -> anyhow::Result<Connection> {
    let mut failures = Vec::new();
    for url in urls.split(',').map(str::trim) {
        match Connection::connect(url, ConnectionProperties::default()).await {
            Ok(conn) => return Ok(conn),
            Err(err) => failures.push(format!("{url}: {err}")),
        }
    }
    anyhow::bail!("no node answers: {}", failures.join("; "))
}

async fn read_stream_on(
    conn: &Connection,
    stream: &str,
    from: u64,
    max: usize,
) -> anyhow::Result<(Vec<Message>, u64)> {
    let channel = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    if channel
        .queue_declare(stream.into(), passive, FieldTable::default())
        .await
        .is_err()
    {
        return Ok((Vec::new(), from)); // not there yet; the 404 closed the channel
    }
    channel.basic_qos(100, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongLongInt(from as i64),
    );
    let mut consumer = channel
        .basic_consume(
            stream.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let (mut got, mut next) = (Vec::new(), from);
    while got.len() < max {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
        else {
            break;
        };
        let delivery = delivery?;
        delivery.ack(BasicAckOptions::default()).await?;
        let message = Message {
            body: delivery.data.clone(),
            headers: delivery.properties.headers().clone().unwrap_or_default(),
        };
        let offset: u64 = message.header("x-stream-offset").unwrap().parse()?;
        if offset >= from {
            next = offset + 1;
            got.push(message);
        }
    }
    let _ = channel.close(200, "read".into()).await;
    Ok((got, next))
}

/// The sum of the samples in a Prometheus text page whose line `matches`
/// accepts (comments never count); `None` when no sample matched.
pub fn metric_sum(metrics: &str, matches: impl Fn(&str) -> bool) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && matches(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A minimal subscription body for `url` receiving `events`.
pub fn subscription(name: &str, url: &str, events: &[&str]) -> Value {
    json!({"name": name, "url": url, "events": events})
}
