//! herald's HTTP API as loadgen uses it: subscriptions named `loadgen-*`
//! matching `load.*`, and a few numbers from `/metrics`.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

/// Every subscription loadgen creates starts with this, so a later run can
/// remove what an interrupted one left behind.
const NAME_PREFIX: &str = "loadgen-";

/// How long until every worker's snapshot holds a subscription change.
const SNAPSHOT_SETTLE: Duration = Duration::from_millis(1500);

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().no_proxy().build()?,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Replaces herald's `loadgen-*` subscriptions with one per `(suffix, url)`,
    /// each matching every load event, and waits until workers see them. A
    /// leftover subscription would add deliveries to the next measurement.
    pub async fn subscribe(&self, subscriptions: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
        let wanted: Vec<String> = subscriptions
            .iter()
            .map(|(suffix, _)| format!("{NAME_PREFIX}{suffix}"))
            .collect();
        for stale in self.names().await? {
            if stale.starts_with(NAME_PREFIX) && !wanted.contains(&stale) {
                self.delete(&stale).await?;
            }
        }
        for (name, (_, url)) in wanted.iter().zip(subscriptions) {
            let response = self
                .http
                .put(format!("{}/v1/subscriptions/{name}", self.base))
                .bearer_auth(&self.token)
                .json(&json!({"url": url, "events": ["load.*"]}))
                .send()
                .await
                .context("creating a subscription")?;
            anyhow::ensure!(
                response.status().is_success(),
                "PUT subscription {name}: {}",
                response.status()
            );
        }
        tokio::time::sleep(SNAPSHOT_SETTLE).await;
        Ok(wanted)
    }

    /// Deletes the given subscriptions (best effort: the next run removes leftovers).
    pub async fn unsubscribe(&self, names: &[String]) {
        for name in names {
            let _ = self.delete(name).await;
        }
    }

    async fn names(&self) -> anyhow::Result<Vec<String>> {
        let list: Value = self
            .http
            .get(format!("{}/v1/subscriptions", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("listing subscriptions")?
            .error_for_status()?
            .json()
            .await?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect())
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/v1/subscriptions/{name}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("reading /metrics")?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics(text))
    }
}

/// A `/metrics` page in Prometheus text format.
pub struct Metrics(String);

impl Metrics {
    /// Sum of the samples of `name` whose label set (`{...}`, or "" without labels)
    /// passes `labels`.
    pub fn sum(&self, name: &str, labels: impl Fn(&str) -> bool) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.strip_prefix(name)?.rsplit_once(' ')?;
                // `name_total` must not pass for `name`: a series is `name{...}` or `name`.
                let ours = series.is_empty() || series.starts_with('{');
                (ours && labels(series)).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_by_labels_and_not_its_longer_namesakes() {
        let m = Metrics(
            "# TYPE herald_queue_messages gauge\n\
             herald_queue_messages{queue=\"p.deliveries\"} 3\n\
             herald_queue_messages{queue=\"p.dead\"} 40\n\
             herald_queue_messages_total 7\n\
             herald_deliveries_in_flight 12\n"
                .to_owned(),
        );
        assert_eq!(
            m.sum("herald_queue_messages", |l| !l.contains(".dead\"")),
            3.0
        );
        assert_eq!(m.sum("herald_deliveries_in_flight", |_| true), 12.0);
    }
}
