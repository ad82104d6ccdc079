//! A producer that keeps going through faults: each event is published with
//! `mandatory` and a confirm and retried (same id) until confirmed, as a
//! careful upstream system would. Only confirmed events enter the ledger.

use std::{ops::Range, time::Duration};

use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use serde_json::json;

use super::ledger::Ledger;

pub struct Publisher {
    url: String,
    exchange: String,
    link: Option<(Connection, Channel)>,
    /// Publishes that failed or timed out and were sent again (unknown outcomes).
    pub retries: usize,
}

impl Publisher {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            exchange: format!("{prefix}.events"),
            link: None,
            retries: 0,
        }
    }

    async fn channel(&mut self) -> anyhow::Result<&Channel> {
        if self
            .link
            .as_ref()
            .is_none_or(|(c, _)| !c.status().connected())
        {
            let conn = crate::support::connect_any(&self.url).await?;
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.link = Some((conn, channel));
        }
        Ok(&self.link.as_ref().expect("just connected").1)
    }

    async fn try_publish(&mut self, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
        let exchange = self.exchange.clone();
        let channel = self.channel().await?;
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        let confirm = tokio::time::timeout(Duration::from_secs(5), confirm).await??;
        anyhow::ensure!(
            confirm.is_ack() && confirm.take_message().is_none(),
            "not routed"
        );
        Ok(())
    }

    /// Publishes until the broker confirms; a failed attempt may still have
    /// been enqueued, so the retry can duplicate but never lose the event.
    pub async fn publish(&mut self, routing_key: &str, body: &[u8]) {
        while let Err(_error) = self.try_publish(routing_key, body).await {
            self.retries += 1;
            self.link = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes the events numbered `ids`, named `<scenario>-<i>` (every
    /// `malformed_every`-th one malformed, `bad-<scenario>-<i>`), at most `rate`
    /// per second, into `ledger`.
    pub async fn run(
        &mut self,
        ledger: &Ledger,
        ids: Range<usize>,
        rate: Option<f64>,
        malformed_every: Option<usize>,
    ) {
        let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r));
        let started = tokio::time::Instant::now();
        let first = ids.start;
        for i in ids {
            if let Some(pace) = pace {
                tokio::time::sleep_until(started + pace * (i - first) as u32).await;
            }
            if malformed_every.is_some_and(|n| i % n == n - 1) {
                // An invalid type: herald must park it in <p>.rejected with its reason.
                let id = format!("bad-{}-{i}", ledger.scenario);
                let body = json!({"id": id, "type": "Not A Type!"}).to_string();
                self.publish("bad", body.as_bytes()).await;
                ledger.confirmed(&id, true);
                continue;
            }
            let id = format!("{}-{i}", ledger.scenario);
            let body = json!({
                "id": id,
                "type": "chaos.test",
                "source": "chaos",
                "labels": {"scenario": ledger.scenario},
                "data": {"i": i, "sent_ns": unix_ns(std::time::SystemTime::now()), "pad": "x".repeat(512)},
            })
            .to_string();
            self.publish("chaos.test", body.as_bytes()).await;
            ledger.confirmed(&id, false);
        }
    }
}

/// Publishes in the background; the handle returns the publisher's retry count.
pub fn spawn(
    url: &str,
    prefix: &str,
    ledger: &Ledger,
    ids: Range<usize>,
    rate: Option<f64>,
    malformed_every: Option<usize>,
) -> tokio::task::JoinHandle<usize> {
    let mut publisher = Publisher::new(url, prefix);
    let ledger = ledger.clone();
    tokio::spawn(async move {
        publisher.run(&ledger, ids, rate, malformed_every).await;
        publisher.retries
    })
}

pub fn unix_ns(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Publish-to-arrival latencies of `requests` (events from `Publisher::run`), sorted.
pub fn latencies(requests: &[crate::support::receiver::Recorded]) -> Vec<Duration> {
    let mut all: Vec<Duration> = requests
        .iter()
        .filter_map(|r| {
            let sent = r.json()["data"]["sent_ns"].as_u64()?;
            Some(Duration::from_nanos(
                unix_ns(r.received_unix).saturating_sub(sent),
            ))
        })
        .collect();
    all.sort();
    all
}

/// The `q` quantile of sorted `latencies`.
pub fn quantile(latencies: &[Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies[((latencies.len() - 1) as f64 * q).round() as usize]
}
