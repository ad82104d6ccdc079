//! Label selectors (`subscriptions::selector::Selector`), parsed from the API and from
//! Redis. Any string: no panic. A parsed selector displays in a canonical form that parses
//! back to an equal selector and displays the same again; `matches` never panics on labels
//! built from the selector's own words (so requirements find their keys) plus extra
//! `key=value` lines after a NUL byte in the input.
#![no_main]

use std::collections::BTreeMap;

use herald::subscriptions::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (source, extra) = input.split_once('\0').unwrap_or((input, ""));
    let Ok(selector) = Selector::parse(source) else {
        return;
    };

    let canonical = selector.to_string();
    let reparsed = Selector::parse(&canonical)
        .unwrap_or_else(|err| panic!("canonical form {canonical:?} of {source:?} fails: {err}"));
    assert_eq!(reparsed, selector, "{source:?} -> {canonical:?}");
    assert_eq!(reparsed.to_string(), canonical);

    let labels = labels(source, extra);
    let verdict = selector.matches(&labels);
    assert_eq!(reparsed.matches(&labels), verdict);
    if canonical.is_empty() {
        assert!(
            selector.matches(&BTreeMap::new()),
            "the empty selector matches everything"
        );
    }
});

/// Each word of the selector as a key whose value is the next word (`env in (prod)` gives
/// `env: in`, `in: prod`, `prod: ""`), then the `key=value` lines of `extra`.
fn labels(source: &str, extra: &str) -> BTreeMap<String, String> {
    let words: Vec<&str> = source
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '=' | '!'))
        .filter(|word| !word.is_empty())
        .collect();
    let mut labels = BTreeMap::new();
    for pair in words.windows(2) {
        labels.insert(pair[0].to_owned(), pair[1].to_owned());
    }
    if let Some(last) = words.last() {
        labels.entry((*last).to_owned()).or_default();
    }
    for line in extra.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        labels.insert(key.to_owned(), value.to_owned());
    }
    labels
}
