//! Applying a set of subscriptions (a GitOps file) to the store: every entry is
//! checked before anything is written, and only what differs from what is
//! stored is written, so applying the same file twice changes nothing the
//! second time. Signing secrets are kept unless an entry sets one.

use std::{collections::BTreeSet, fmt};

use serde_json::Value;

use super::{
    model::Subscription,
    store::{Expect, Store, StoreError, Written},
};
use crate::field_error::FieldError;

/// What applying does to one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created,
    /// The fields that differ from what is stored (`secret` when a new one is set).
    Changed(Vec<String>),
    Unchanged,
    /// Stored but not in the file, removed with `--prune`.
    Pruned,
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub change: Change,
    write: Write,
}

#[derive(Debug)]
enum Write {
    Create(Subscription),
    /// The replacement, and the stored JSON it replaces (written only if still so).
    Replace(Subscription, String),
    Delete,
    Nothing,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Change::Created => write!(f, "created    {}", self.name),
            Change::Changed(fields) => {
                write!(f, "changed    {} ({})", self.name, fields.join(", "))
            }
            Change::Unchanged => write!(f, "unchanged  {}", self.name),
            Change::Pruned => write!(f, "pruned     {}", self.name),
        }
    }
}

/// An entry of the file that cannot be applied.
#[derive(Debug, thiserror::Error)]
#[error("subscriptions[{index}]{}: {error}", name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())]
pub struct EntryError {
    pub index: usize,
    pub name: Option<String>,
    pub error: FieldError,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("subscription `{0}` changed while applying; nothing after it was written, apply again")]
    Conflict(String),
}

/// The steps that bring `stored` to `entries`, or every entry that is invalid.
/// `check` adds the deployment's own rules (the SSRF guard on literal targets).
pub fn plan(
    entries: &[Value],
    stored: &[(Subscription, String)],
    prune: bool,
    check: impl Fn(&Subscription) -> Result<(), FieldError>,
) -> Result<Vec<Step>, Vec<EntryError>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    let mut named = BTreeSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let name = entry.get("name").and_then(Value::as_str).map(str::to_owned);
        let existing = stored.iter().find(|(s, _)| Some(&s.name) == name.as_ref());
        let checked = Subscription::from_json(entry, existing.map(|(s, _)| s))
            .and_then(|sub| check(&sub).map(|()| sub))
            .and_then(|sub| match named.insert(sub.name.clone()) {
                true => Ok(sub),
                false => Err(FieldError::new("name", "appears twice in the file")),
            });
        match checked {
            Ok(sub) => steps.push(step(sub, existing)),
            Err(error) => errors.push(EntryError { index, name, error }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if prune {
        let gone = stored.iter().filter(|(s, _)| !named.contains(&s.name));
        steps.extend(gone.map(|(s, _)| Step {
            name: s.name.clone(),
            change: Change::Pruned,
            write: Write::Delete,
        }));
    }
    Ok(steps)
}

fn step(sub: Subscription, existing: Option<&(Subscription, String)>) -> Step {
    let name = sub.name.clone();
    let Some((old, raw)) = existing else {
        return Step {
            name,
            change: Change::Created,
            write: Write::Create(sub),
        };
    };
    let fields = changed_fields(old, &sub);
    if fields.is_empty() {
        return Step {
            name,
            change: Change::Unchanged,
            write: Write::Nothing,
        };
    }
    Step {
        name,
        change: Change::Changed(fields),
        write: Write::Replace(sub, raw.clone()),
    }
}

/// The top-level fields whose values differ, in order; `secret` when it does.
fn changed_fields(old: &Subscription, new: &Subscription) -> Vec<String> {
    let (old_json, new_json) = (old.public_json(), new.public_json());
    let keys: BTreeSet<&String> = [&old_json, &new_json]
        .into_iter()
        .filter_map(Value::as_object)
        .flat_map(|map| map.keys())
        .collect();
    let mut fields: Vec<String> = keys
        .into_iter()
        .filter(|key| old_json.get(key.as_str()) != new_json.get(key.as_str()))
        .cloned()
        .collect();
    if old.secret != new.secret {
        fields.push("secret".into());
    }
    fields
}

/// Writes the steps in order. A subscription changed by someone else since it
/// was read stops the apply there: nothing is overwritten blindly.
pub async fn apply(steps: &[Step], store: &Store) -> Result<(), ApplyError> {
    for step in steps {
        let written = match &step.write {
            Write::Create(sub) => store.write(sub, Expect::Absent).await?,
            Write::Replace(sub, raw) => store.write(sub, Expect::Current(raw)).await?,
            Write::Delete => {
                store.delete(&step.name).await?;
                continue;
            }
            Write::Nothing => continue,
        };
        if written == Written::Conflict {
            return Err(ApplyError::Conflict(step.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(body: Value) -> (Subscription, String) {
        let sub = Subscription::from_json(&body, None).unwrap();
        let raw = serde_json::to_string(&sub).unwrap();
        (sub, raw)
    }

    fn no_check(_: &Subscription) -> Result<(), FieldError> {
        Ok(())
    }

    #[test]
    fn steps_say_created_changed_with_fields_unchanged_and_pruned() {
        let current = [
            stored(json!({"name": "same", "url": "https://a.example/", "events": ["*"]})),
            stored(json!({"name": "moved", "url": "https://a.example/", "events": ["*"]})),
            stored(json!({"name": "old", "url": "https://a.example/", "events": ["*"]})),
        ];
        let entries = [
            json!({"name": "same", "url": "https://a.example/", "events": ["*"]}),
            json!({"name": "moved", "url": "https://b.example/", "events": ["*"], "enabled": false,
                   "filter": "data.replicas >= 3"}),
            json!({"name": "new", "url": "https://a.example/", "events": ["*"]}),
        ];
        let steps = plan(&entries, &current, true, no_check).unwrap();
        let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "unchanged  same",
                "changed    moved (enabled, filter, url)",
                "created    new",
                "pruned     old"
            ]
        );
    }

    #[test]
    fn a_secret_is_kept_unless_the_file_sets_another() {
        let current = [stored(
            json!({"name": "s", "url": "https://a.example/", "events": ["*"]}),
        )];
        let same = [json!({"name": "s", "url": "https://a.example/", "events": ["*"]})];
        let steps = plan(&same, &current, false, no_check).unwrap();
        assert_eq!(steps[0].change, Change::Unchanged);
        let given = [
            json!({"name": "s", "url": "https://a.example/", "events": ["*"],
                            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ];
        let steps = plan(&given, &current, false, no_check).unwrap();
        assert_eq!(steps[0].change, Change::Changed(vec!["secret".into()]));
    }

    #[test]
    fn every_invalid_entry_is_reported_and_nothing_is_planned() {
        let entries = [
            json!({"name": "ok", "url": "https://a.example/", "events": ["*"]}),
            json!({"name": "bad", "url": "ftp://a.example/", "events": ["*"]}),
            json!({"url": "https://a.example/", "events": ["*"]}),
            json!({"name": "ok", "url": "https://a.example/", "events": ["*"]}),
            json!({"name": "f", "url": "https://a.example/", "events": ["*"], "filter": "data.x = 1"}),
        ];
        let errors = plan(&entries, &[], false, no_check).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("subscriptions[1] (bad): url: "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "subscriptions[2]: name: required");
        assert_eq!(
            lines[2],
            "subscriptions[3] (ok): name: appears twice in the file"
        );
        assert_eq!(
            lines[3],
            "subscriptions[4] (f): filter: '=' is not an operator; compare with '==' at position 8"
        );
    }

    #[test]
    fn the_deployments_own_check_counts_as_invalid() {
        let entries = [json!({"name": "a", "url": "https://a.example/", "events": ["*"]})];
        let refuse = |_: &Subscription| Err(FieldError::new("url", "forbidden target"));
        let errors = plan(&entries, &[], false, refuse).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "subscriptions[0] (a): url: forbidden target"
        );
    }
}
