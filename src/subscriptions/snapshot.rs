//! One consistent set of subscriptions, compiled for matching: patterns,
//! selectors and filters parsed and templates compiled once per set, and indexes
//! that find an event's candidates by type and by a required label value without
//! scanning every subscription. Pure: `current` loads and swaps snapshots.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use tracing::debug;

use super::{
    credentials::Credentials,
    filter::{Filter, Subject},
    model::Subscription,
    pattern::EventPattern,
    selector::Selector,
    template::Templates,
};
use crate::event::Event;

/// A subscription ready for matching and rendering.
#[derive(Debug)]
pub struct Compiled {
    pub sub: Subscription,
    selector: Selector,
    filter: Option<Filter>,
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
        let filter = sub
            .filter
            .as_deref()
            .map(Filter::parse)
            .transpose()
            .map_err(|e| format!("filter: {e}"))?;
        Ok(Self {
            sub,
            selector,
            filter,
            templates,
        })
    }

    /// The subscription's compiled templates; `None` when nothing is templated.
    pub fn templates(&self) -> Option<&Templates> {
        self.templates.as_ref()
    }

    /// Patterns, then selector, then filter: the filter, the costliest, runs only on
    /// what the others let through, and only then may `data` get parsed.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        let event = subject.event();
        self.sub.events.iter().any(|p| p.matches(&event.event_type))
            && self.selector.matches(&event.labels)
            && self.filter.as_ref().is_none_or(|f| self.passes(f, subject))
    }

    fn passes(&self, filter: &Filter, subject: &Subject<'_>) -> bool {
        filter.evaluate(subject).unwrap_or_else(|| {
            debug!(subscription = %self.sub.name, event_id = %subject.event().id,
                   "filter cannot tell (a field is missing or of another type): no match");
            false
        })
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

    /// Every subscription, enabled or not, whose patterns, selector and filter match `event`.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Arc<Compiled>> {
        // One subject for all candidates: `data` is parsed for the first filter, if any.
        let subject = Subject::new(event);
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
            .filter(move |c| c.matches(&subject))
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
            let subject = Subject::new(&event);
            let scan: BTreeSet<String> = all.iter().filter(|c| c.matches(&subject)).map(|c| c.sub.name.clone()).collect();
            let snapshot = Snapshot::build(1, all);
            let found: Vec<String> = snapshot.matching(&event).map(|c| c.sub.name.clone()).collect();
            let unique: BTreeSet<String> = found.iter().cloned().collect();
            prop_assert_eq!(found.len(), unique.len(), "no subscription is returned twice");
            prop_assert_eq!(unique, scan);
        }
    }
}
