//! The ledger of RELIABILITY.md: what the publisher had confirmed, what the
//! receivers got, what ended in `<p>.dead` and `<p>.rejected`, and what
//! `/metrics` says. Its report is the scenario's result: `missing` must be 0
//! and duplicates within the bound the scenario states.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{Message, receiver::Recorded};

/// The events of one scenario: every well-formed event is meant for every
/// subscription in `subscriptions`; malformed ones are meant for `<p>.rejected`.
#[derive(Clone)]
pub struct Ledger {
    pub scenario: &'static str,
    subscriptions: Arc<Mutex<Vec<String>>>,
    confirmed: Arc<Mutex<BTreeSet<String>>>,
    malformed: Arc<Mutex<BTreeSet<String>>>,
}

impl Ledger {
    pub fn new(scenario: &'static str, subscriptions: &[&str]) -> Self {
        Self {
            scenario,
            subscriptions: Arc::new(Mutex::new(
                subscriptions.iter().map(|s| (*s).to_owned()).collect(),
            )),
            confirmed: Arc::default(),
            malformed: Arc::default(),
        }
    }

    /// Records an event whose publish was confirmed: herald owns it from here.
    pub fn confirmed(&self, id: &str, malformed: bool) {
        let set = if malformed {
            &self.malformed
        } else {
            &self.confirmed
        };
        set.lock().unwrap().insert(id.to_owned());
    }

    pub fn published(&self) -> usize {
        self.confirmed.lock().unwrap().len()
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.confirmed.lock().unwrap().clone()
    }

    /// Compares the books. `requests` are every receiver's records; a request's
    /// subscription is the last segment of its path (`…/hook/<subscription>`).
    pub fn reconcile(
        &self,
        requests: &[Recorded],
        dead: &[Message],
        rejected: &[Message],
    ) -> Report {
        let subscriptions = self.subscriptions.lock().unwrap().clone();
        let confirmed = self.confirmed.lock().unwrap().clone();
        let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut requests_total = 0;
        for r in requests {
            requests_total += 1;
            let id = r.header("webhook-id");
            if (200..300).contains(&r.status) && confirmed.contains(id) {
                let sub = r.path.rsplit('/').next().unwrap_or_default().to_owned();
                *delivered
                    .entry((sub, r.header("webhook-id").to_owned()))
                    .or_default() += 1;
            }
        }
        let mut dead_pairs = BTreeSet::new();
        let mut dead_by_reason: BTreeMap<String, usize> = BTreeMap::new();
        for m in dead {
            // herald's archive names the broker's own dead letters (delivery limit) poison.
            let reason = m
                .header("x-herald-reason")
                .unwrap_or_else(|| "unnamed".into());
            *dead_by_reason.entry(reason).or_default() += 1;
            let id = serde_json::from_slice::<serde_json::Value>(&m.body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match m
                .header("x-herald-subscription")
                .or_else(|| m.header("herald-subscription"))
            {
                Some(sub) => {
                    dead_pairs.insert((sub, id));
                }
                None => {
                    for sub in &subscriptions {
                        dead_pairs.insert((sub.clone(), id.clone()));
                    }
                }
            }
        }
        let rejected_ids: BTreeSet<String> = rejected
            .iter()
            .map(|m| {
                let body = String::from_utf8_lossy(&m.body);
                body.split('"')
                    .find(|s| s.starts_with("bad-"))
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let mut missing = Vec::new();
        for id in &confirmed {
            for sub in &subscriptions {
                let pair = (sub.clone(), id.clone());
                if !delivered.contains_key(&pair) && !dead_pairs.contains(&pair) {
                    missing.push(pair);
                }
            }
        }
        let malformed = self.malformed.lock().unwrap().clone();
        let rejected_missing: Vec<String> = malformed.difference(&rejected_ids).cloned().collect();
        Report {
            scenario: self.scenario,
            published: confirmed.len(),
            pairs: confirmed.len() * subscriptions.len(),
            requests: requests_total,
            delivered_unique: delivered.len(),
            duplicates: delivered.values().map(|n| n - 1).sum(),
            dead: dead_by_reason,
            malformed: malformed.len(),
            rejected: rejected.len(),
            missing,
            rejected_missing,
            drained_in: Duration::ZERO,
            bound: None,
        }
    }
}

/// One scenario's figures, printed as a `LEDGER` line that `scripts/chaos.sh`
/// collects into its table.
#[derive(Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub published: usize,
    pub pairs: usize,
    pub requests: usize,
    pub delivered_unique: usize,
    pub duplicates: usize,
    pub dead: BTreeMap<String, usize>,
    pub malformed: usize,
    pub rejected: usize,
    pub missing: Vec<(String, String)>,
    pub rejected_missing: Vec<String>,
    pub drained_in: Duration,
    pub bound: Option<usize>,
}

impl Report {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.rejected_missing.is_empty()
    }

    pub fn dead_total(&self) -> usize {
        self.dead.values().sum()
    }

    /// Prints the ledger line, then fails the test when anything is missing or
    /// the duplicates exceed `bound` (the fault count × the in-flight window).
    pub fn check(mut self, bound: usize) -> Self {
        self.bound = Some(bound);
        println!("{self}");
        assert!(
            self.missing.is_empty(),
            "{}: {} (event, subscription) pairs neither delivered nor dead-lettered, e.g. {:?}",
            self.scenario,
            self.missing.len(),
            &self.missing[..self.missing.len().min(5)]
        );
        assert!(
            self.rejected_missing.is_empty(),
            "{}: malformed events not in <p>.rejected: {:?}",
            self.scenario,
            self.rejected_missing
        );
        assert!(
            self.duplicates <= bound,
            "{}: {} duplicates exceed the bound {bound}",
            self.scenario,
            self.duplicates
        );
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dead = if self.dead.is_empty() {
            "0".to_owned()
        } else {
            self.dead
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "LEDGER | {} | published {} | pairs {} | delivered unique {} | duplicates {} (bound {}) | dead {} | rejected {}/{} | missing {} | drained in {:.1}s | requests {}",
            self.scenario,
            self.published,
            self.pairs,
            self.delivered_unique,
            self.duplicates,
            self.bound.map_or_else(|| "-".into(), |b| b.to_string()),
            dead,
            self.rejected,
            self.malformed,
            self.missing.len() + self.rejected_missing.len(),
            self.drained_in.as_secs_f64(),
            self.requests,
        )
    }
}
