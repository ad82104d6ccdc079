//! Event-type patterns (`subscriptions::pattern::EventPattern`) and, through them, the
//! crate-private `glob_match`. The input is a pattern, optionally followed by a NUL byte and
//! the event type to match. A parsed pattern is the lowercased input, displays back to
//! itself, and `matches` agrees with a textbook dynamic-programming glob matcher.
#![no_main]

use herald::subscriptions::pattern::EventPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // Without a NUL the pattern is matched against itself minus its stars, a likely match.
    let (source, event_type) = match input.split_once('\0') {
        Some((source, event_type)) => (source, event_type.to_owned()),
        None => (input, input.to_ascii_lowercase().replace('*', "")),
    };
    let Ok(pattern) = EventPattern::parse(source) else {
        return;
    };

    assert_eq!(pattern.as_str(), source.to_ascii_lowercase());
    assert_eq!(pattern.to_string(), pattern.as_str());
    assert_eq!(EventPattern::parse(pattern.as_str()).as_ref(), Ok(&pattern));
    assert_eq!(pattern.exact().is_some(), !source.contains('*'));
    if let Some(exact) = pattern.exact() {
        assert!(pattern.matches(exact));
    }

    let expected = reference_glob(pattern.as_str().as_bytes(), event_type.as_bytes());
    assert_eq!(
        pattern.matches(&event_type),
        expected,
        "pattern {:?} against {event_type:?}",
        pattern.as_str()
    );
});

/// `*` matches any run of bytes, anything else itself: `ok[i][j]` says whether the first `i`
/// bytes of the pattern match the first `j` bytes of the text. O(len * len), no recursion.
fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        if p == b'*' {
            // A star matches the empty run, or swallows one more byte.
            next[0] = row[0];
            for j in 1..=text.len() {
                next[j] = row[j] || next[j - 1];
            }
        } else {
            for j in 1..=text.len() {
                next[j] = row[j - 1] && text[j - 1] == p;
            }
        }
        row = next;
    }
    row[text.len()]
}
