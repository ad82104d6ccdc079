//! The ceiling: the least any webhook worker must do, a bare consume -> POST ->
//! ack loop, one message at a time per task, `--concurrency` at once. It runs as
//! a process of its own (`--mode loop`, started by the mode that measures it),
//! so that its CPU is read from /proc beside herald's: the bench compares what
//! each spends per delivery, not only how fast each goes.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::{
    Connection, ConnectionProperties,
    options::*,
    types::{AMQPValue, FieldTable},
};

use crate::Args;

/// What the loop prints once it consumes.
const READY: &str = "ready";

/// A running loop process, stopped when dropped.
pub struct CeilingLoop {
    child: Child,
    pub queue: String,
}

impl CeilingLoop {
    /// Starts `loadgen --mode loop` on a fresh queue of `queue_type` that POSTs
    /// to `url`, and waits until it consumes.
    pub async fn start(args: &Args, queue_type: &str, url: &str) -> anyhow::Result<Self> {
        let queue = format!("ceiling-{}", uuid::Uuid::new_v4().simple());
        let exe = std::env::current_exe().context("finding loadgen's own binary")?;
        let mut child = Command::new(exe)
            .args(["--mode", "loop", "--ceiling", queue_type, "--queue", &queue])
            .args(["--url", url, "--amqp", &args.amqp])
            .args(["--concurrency", &args.concurrency.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the ceiling loop")?;
        let stdout = child.stdout.take().expect("piped");
        let first = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await??;
        let started = Self { child, queue };
        anyhow::ensure!(first.trim() == READY, "the ceiling loop did not start");
        Ok(started)
    }

    /// CPU time the loop has used so far (user + system, all its threads), in ms.
    pub fn cpu_ms(&self) -> anyhow::Result<u64> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("no command name in /proc/<pid>/stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?)
        };
        // utime and stime (fields 14 and 15), in USER_HZ ticks: 100 a second on Linux.
        Ok((ticks(11)? + ticks(12)?) * 10)
    }
}

impl Drop for CeilingLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--mode loop`: declares `--queue` (of the `--ceiling` type; it expires
/// unused), consumes it with manual acks and prefetch `--concurrency`, and for
/// each message POSTs its body to `--url` and acks, until killed.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let queue_type = args
        .ceiling
        .as_deref()
        .context("--mode loop needs --ceiling")?;
    let queue = args.queue.as_deref().context("--mode loop needs --queue")?;
    let url = args.url.clone().context("--mode loop needs --url")?;
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.into()),
    );
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await?;
    channel
        .basic_qos(args.concurrency, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    println!("{READY}");
    while let Some(Ok(delivery)) = consumer.next().await {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let sent = client
                .post(url)
                .header("content-type", "application/json")
                .body(delivery.data.clone())
                .send()
                .await;
            if sent.is_ok() {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        });
    }
    Ok(())
}
