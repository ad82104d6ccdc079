//! Every worker's in-memory copy of the subscriptions: patterns and selectors
//! compiled once, swapped atomically (readers never lock), and refreshed by a
//! background task on each pub/sub notice and on a 1 s check of the change
//! counter. A store that comes back empty is not adopted (DESIGN, Redis).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    credentials::Credentials,
    model::Subscription,
    pattern::EventPattern,
    selector::Selector,
    store::{Contents, Store, StoreError},
    template::Templates,
};
use crate::event::Event;

/// How often the counter is compared even without a notice: the bound on staleness.
const POLL: Duration = Duration::from_secs(1);

/// A subscription ready for matching and rendering.
#[derive(Debug)]
pub struct Compiled {
    pub sub: Subscription,
    selector: Selector,
    templates: Option<Templates>,
}

impl Compiled {
    pub fn compile(sub: Subscription, credentials: &Arc<Credentials>) -> Result<Self, String> {
        let templates =
            Templates::compile(&sub, Some(credentials.clone())).map_err(|e| e.to_string())?;
        let selector = match &sub.selector {
            Some(s) => Selector::parse(s).map_err(|e| e.to_string())?,
            None => Selector::default(),
        };
        Ok(Self {
            sub,
            selector,
            templates,
        })
    }

    /// The subscription's compiled templates; `None` when nothing is templated.
    pub fn templates(&self) -> Option<&Templates> {
        self.templates.as_ref()
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.sub.events.iter().any(|p| p.matches(&event.event_type))
            && self.selector.matches(&event.labels)
    }
}

/// One consistent set of subscriptions, indexed for matching.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's change counter this snapshot reflects (0: never written).
    pub version: u64,
    by_name: HashMap<String, Arc<Compiled>>,
    /// Subscriptions whose patterns are all exact, by event type.
    exact: HashMap<String, Bucket>,
    /// Subscriptions whose patterns are all exact or `<segment>.*` (at least one
    /// glob), by the first segment of the types they can match.
    by_segment: HashMap<String, Bucket>,
    /// Subscriptions with at least one glob: candidates for every event.
    globbed: Bucket,
}

/// The subscriptions one event type leads to, narrowed again by label: most selectors
/// name a project or team, so only a few of thousands can match any one event.
#[derive(Debug, Default)]
struct Bucket {
    /// Subscriptions whose selector requires a literal label value (see
    /// `Selector::required_label`), by label key, then by each value it accepts.
    /// Ordered by key so matching yields subscriptions in a stable order.
    by_label: BTreeMap<String, HashMap<String, Vec<Arc<Compiled>>>>,
    /// Subscriptions without such a requirement: candidates for every event here.
    unlabelled: Vec<Arc<Compiled>>,
}

impl Bucket {
    fn insert(&mut self, compiled: &Arc<Compiled>) {
        match compiled.selector.required_label() {
            Some((key, values)) => {
                let by_value = self.by_label.entry(key.to_owned()).or_default();
                // `in` values are deduplicated and an event has one value per key,
                // so no event finds the subscription twice.
                for value in values {
                    by_value
                        .entry(value.to_owned())
                        .or_default()
                        .push(compiled.clone());
                }
            }
            None => self.unlabelled.push(compiled.clone()),
        }
    }

    /// Looks up by the keys the bucket indexes rather than by the event's labels:
    /// subscriptions use a handful of keys, an event may carry many labels.
    fn candidates<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Arc<Compiled>> {
        self.by_label
            .iter()
            .filter_map(|(key, by_value)| by_value.get(labels.get(key)?))
            .flatten()
            .chain(&self.unlabelled)
    }
}

impl Snapshot {
    pub fn build(version: u64, subs: impl IntoIterator<Item = Compiled>) -> Self {
        let mut snapshot = Self {
            version,
            ..Self::default()
        };
        for compiled in subs {
            let compiled = Arc::new(compiled);
            let patterns = &compiled.sub.events;
            let exact: Option<Vec<&str>> = patterns.iter().map(EventPattern::exact).collect();
            let segments: Option<Vec<&str>> = patterns
                .iter()
                .map(|p| {
                    p.exact()
                        .and_then(|t| t.split('.').next())
                        .or_else(|| p.first_segment())
                })
                .collect();
            match (exact, segments) {
                (Some(types), _) => index_under(&mut snapshot.exact, types, &compiled),
                (None, Some(segments)) => {
                    index_under(&mut snapshot.by_segment, segments, &compiled)
                }
                (None, None) => snapshot.globbed.insert(&compiled),
            }
            snapshot.by_name.insert(compiled.sub.name.clone(), compiled);
        }
        snapshot
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Compiled>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every subscription, enabled or not, whose patterns and selector match `event`.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Arc<Compiled>> {
        let segment = event.event_type.split('.').next().unwrap_or_default();
        let buckets = [
            self.exact.get(&event.event_type),
            self.by_segment.get(segment),
            Some(&self.globbed),
        ];
        buckets
            .into_iter()
            .flatten()
            .flat_map(|bucket| bucket.candidates(&event.labels))
            .filter(move |c| c.matches(event))
    }
}

/// Files `compiled` once under each distinct key.
fn index_under(index: &mut HashMap<String, Bucket>, mut keys: Vec<&str>, compiled: &Arc<Compiled>) {
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        index.entry(key.to_owned()).or_default().insert(compiled);
    }
}

/// The shared handle: the current snapshot plus what `/readyz` reports about it.
pub struct Subscriptions {
    credentials: Arc<Credentials>,
    current: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    store_reset: AtomicBool,
    redis_connected: AtomicBool,
    confirmed_at: Mutex<Option<Instant>>,
}

impl Subscriptions {
    /// Templates compiled into the snapshot resolve `credential()` from `credentials`.
    pub fn new(credentials: Arc<Credentials>) -> Self {
        Self {
            credentials,
            current: ArcSwap::from_pointee(Snapshot::default()),
            loaded: AtomicBool::new(false),
            store_reset: AtomicBool::new(false),
            redis_connected: AtomicBool::new(false),
            confirmed_at: Mutex::new(None),
        }
    }

    /// Where `credential()` values come from, for templates compiled outside the snapshot.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A snapshot was loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Redis came back without the counter while we held subscriptions.
    pub fn store_reset(&self) -> bool {
        self.store_reset.load(Ordering::Acquire)
    }

    pub fn redis_connected(&self) -> bool {
        self.redis_connected.load(Ordering::Acquire)
    }

    /// Time since the snapshot was last confirmed current against Redis.
    pub fn age(&self) -> Option<Duration> {
        self.confirmed_at
            .lock()
            .expect("the confirmed_at lock is never poisoned: nothing panics under it")
            .map(|t| t.elapsed())
    }

    fn confirm(&self) {
        *self
            .confirmed_at
            .lock()
            .expect("the confirmed_at lock is never poisoned: nothing panics under it") =
            Some(Instant::now());
    }

    /// Compares the counter and reloads when it moved. Called by the refresher.
    pub async fn sync(&self, store: &Store) {
        let result = self.try_sync(store).await;
        self.redis_connected
            .store(result.is_ok(), Ordering::Release);
        if let Err(err) = result {
            debug!(error = %err, "subscription store unreachable, keeping the snapshot");
        }
    }

    async fn try_sync(&self, store: &Store) -> Result<(), StoreError> {
        let current = self.load();
        let version = store.version().await?;
        match version {
            Some(v) if self.is_loaded() && v == current.version && !self.store_reset() => {
                self.confirm();
                return Ok(());
            }
            None if self.is_loaded() && current.version > 0 => {
                // Redis restarted without its data: adopting the empty set would
                // silently stop every delivery. Keep serving the last snapshot.
                if !self.store_reset.swap(true, Ordering::AcqRel) {
                    error!(
                        subscriptions = current.len(),
                        "subscription store was reset (change counter missing); keeping the last snapshot until the store is written again (herald subscriptions apply)"
                    );
                }
                return Ok(());
            }
            None if self.is_loaded() => {
                self.confirm();
                return Ok(());
            }
            _ => {}
        }
        let contents = store.contents().await?;
        self.adopt(contents);
        Ok(())
    }

    fn adopt(&self, contents: Contents) {
        let version = contents.version.unwrap_or(0);
        let compiled = contents.records.into_iter().filter_map(|(name, raw)| {
            let parsed = serde_json::from_str::<Subscription>(&raw)
                .map_err(|e| e.to_string())
                .and_then(|sub| Compiled::compile(sub, &self.credentials));
            match parsed {
                Ok(c) => Some(c),
                Err(err) => {
                    warn!(subscription = %name, error = %err, "skipping an unreadable subscription record");
                    None
                }
            }
        });
        let snapshot = Snapshot::build(version, compiled);
        let (count, previous) = (snapshot.len(), self.load().version);
        self.current.store(Arc::new(snapshot));
        self.loaded.store(true, Ordering::Release);
        if self.store_reset.swap(false, Ordering::AcqRel) {
            info!("subscription store written again; snapshot replaced");
        }
        self.confirm();
        info!(
            subscriptions = count,
            version, previous, "subscription snapshot refreshed"
        );
    }

    /// Keeps the snapshot current until `cancel`: a notice triggers a sync at
    /// once, the 1 s poll catches missed notices and reconnects.
    pub async fn refresh(&self, store: &Store, cancel: &CancellationToken) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !cancel.is_cancelled() {
            let pubsub = async {
                let mut pubsub = store.client().get_async_pubsub().await?;
                pubsub.subscribe(store.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut notices = match tokio::time::timeout(Duration::from_secs(2), pubsub).await {
                Ok(Ok(pubsub)) => Some(pubsub.into_on_message()),
                Ok(Err(_)) | Err(_) => None,
            };
            // Sync after (re)subscribing so nothing written in between is missed.
            self.sync(store).await;
            loop {
                let notice = async {
                    match notices.as_mut() {
                        Some(stream) => stream.next().await.is_some(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    alive = notice => {
                        if !alive {
                            break; // pub/sub connection lost: resubscribe
                        }
                        self.sync(store).await;
                    }
                    _ = poll.tick() => {
                        self.sync(store).await;
                        if notices.is_none() {
                            break; // try to subscribe again
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::event;

    const PATTERNS: [&str; 9] = [
        "*", "a.*", "a.b", "b.*", "*.c", "a.b.c", "b.c", "a*", "*.b.*",
    ];
    const TYPES: [&str; 7] = ["a.b", "a.c", "a.b.c", "b.c", "b.b.c", "c", "ab.c"];

    fn compiled(i: usize, patterns: &[usize], selector: Option<&str>) -> Compiled {
        let events: Vec<&str> = patterns.iter().map(|p| PATTERNS[*p]).collect();
        let mut body =
            json!({"name": format!("s{i}"), "url": "https://example.com/", "events": events});
        if let Some(s) = selector {
            body["selector"] = json!(s);
        }
        let sub = Subscription::from_json(&body, None).unwrap();
        Compiled::compile(sub, &Arc::new(Credentials::new("/nonexistent"))).unwrap()
    }

    /// Selectors indexed by label (literal `=` or `in`, alone or with other requirements)
    /// and ones that are not (globbed values, negations, presence, none at all).
    const SELECTORS: [&str; 14] = [
        "env=prod",
        "!env",
        "env in (dev,prod)",
        "env in (prod)",
        "env=",
        "env=pr*",
        "env in (prod,d*)",
        "env!=prod",
        "team",
        "env=dev,team=a",
        "team=a,env in (dev,prod)",
        "env in (dev,prod),team=b",
        "env=p*,team=b",
        "env notin (dev),!team",
    ];

    proptest! {
        /// The indexes only narrow the candidates: the result is what a full scan finds.
        #[test]
        fn the_index_finds_exactly_what_a_full_scan_finds(
            subs in prop::collection::vec((prop::collection::vec(0..PATTERNS.len(), 1..3), prop::option::of(0..SELECTORS.len())), 1..30),
            t in 0..TYPES.len(),
            env in prop::option::of(prop::sample::select(vec!["prod", "dev", "staging", ""])),
            team in prop::option::of(prop::sample::select(vec!["a", "b"])),
        ) {
            let all: Vec<Compiled> = subs
                .iter()
                .enumerate()
                .map(|(i, (p, s))| compiled(i, p, s.map(|s| SELECTORS[s])))
                .collect();
            let labels: BTreeMap<&str, &str> = [("env", env), ("team", team)]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect();
            let event = json!({"type": TYPES[t], "labels": labels});
            let event = event::decode(event.to_string().as_bytes()).unwrap().event;
            let scan: BTreeSet<String> = all.iter().filter(|c| c.matches(&event)).map(|c| c.sub.name.clone()).collect();
            let snapshot = Snapshot::build(1, all);
            let found: Vec<String> = snapshot.matching(&event).map(|c| c.sub.name.clone()).collect();
            let unique: BTreeSet<String> = found.iter().cloned().collect();
            prop_assert_eq!(found.len(), unique.len(), "no subscription is returned twice");
            prop_assert_eq!(unique, scan);
        }
    }
}
