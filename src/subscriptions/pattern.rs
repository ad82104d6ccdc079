//! Event-type patterns: the `events` entries of a subscription (`deployment.failed`,
//! `deployment.*`, `*`). Fan-out asks each pattern whether an event's type matches, before the
//! label selector is consulted. Also home of [`glob_match`], the one `*` matcher that
//! `selector.rs` reuses for label values.

use std::fmt;
use std::str::FromStr;

/// Longest pattern accepted, the same limit as an event type.
const MAX_LEN: usize = 128;

/// A parsed event-type pattern: an exact type, or a glob where `*` stands for any run of
/// characters, dots included (`*`, `deployment.*`, `*.failed`, `test*.end.*`).
///
/// Patterns are case-insensitive: [`EventPattern::parse`] lowercases them, and event types are
/// lowercased when an event is validated, so matching compares lowercase with lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPattern {
    source: String,
    kind: Kind,
}

/// How `matches` decides, chosen once at parse time so the common shapes skip the glob loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No `*`.
    Exact,
    /// Only `*`s: every event type.
    Everything,
    /// A single trailing `*` (`deployment.*`).
    Prefix,
    /// Anything else with a `*`.
    Glob,
}

/// Why a string is not an event-type pattern. Positions are 1-based character columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("event pattern is empty")]
    Empty,
    #[error("event pattern is {len} characters long; the limit is {max}", max = MAX_LEN)]
    TooLong { len: usize },
    #[error(
        "event pattern {pattern:?} has {ch:?} at position {position}; \
         use letters, digits, '.', '_', '-' or '*'"
    )]
    InvalidChar {
        pattern: String,
        ch: char,
        position: usize,
    },
    /// `position` is the `.` that leaves a segment empty.
    #[error(
        "event pattern {pattern:?} has an empty segment at position {position}; \
         event types never start or end with '.' or contain \"..\""
    )]
    EmptySegment { pattern: String, position: usize },
}

impl EventPattern {
    /// Parses and lowercases a pattern. Beyond the alphabet, it rejects a leading or trailing
    /// `.` and `..`, since no event type could ever match them.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let len = s.chars().count();
        if len == 0 {
            return Err(PatternError::Empty);
        }
        if len > MAX_LEN {
            return Err(PatternError::TooLong { len });
        }
        if let Some((index, ch)) = s
            .chars()
            .enumerate()
            .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '*')))
        {
            return Err(PatternError::InvalidChar {
                pattern: s.to_owned(),
                ch,
                position: index + 1,
            });
        }
        // From here on the pattern is ASCII, so byte offsets are character columns.
        let empty_segment = if s.starts_with('.') {
            Some(0)
        } else if let Some(index) = s.find("..") {
            Some(index + 1)
        } else if s.ends_with('.') {
            Some(s.len() - 1)
        } else {
            None
        };
        if let Some(index) = empty_segment {
            return Err(PatternError::EmptySegment {
                pattern: s.to_owned(),
                position: index + 1,
            });
        }

        let source = s.to_ascii_lowercase();
        let stars = source.bytes().filter(|&b| b == b'*').count();
        let kind = if stars == 0 {
            Kind::Exact
        } else if stars == source.len() {
            Kind::Everything
        } else if stars == 1 && source.ends_with('*') {
            Kind::Prefix
        } else {
            Kind::Glob
        };
        Ok(Self { source, kind })
    }

    /// Whether `event_type` matches. It must already be lowercase (event validation
    /// lowercases types): an uppercase letter in it never matches a pattern letter.
    pub fn matches(&self, event_type: &str) -> bool {
        match self.kind {
            Kind::Exact => self.source == event_type,
            Kind::Everything => true,
            Kind::Prefix => self
                .source
                .strip_suffix('*')
                .is_some_and(|prefix| event_type.starts_with(prefix)),
            Kind::Glob => glob_match(&self.source, event_type),
        }
    }

    /// The lowercased pattern.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Some(exact type) when the pattern has no `*`: lets the snapshot index exact patterns in a HashMap.
    pub fn exact(&self) -> Option<&str> {
        match self.kind {
            Kind::Exact => Some(&self.source),
            Kind::Everything | Kind::Prefix | Kind::Glob => None,
        }
    }

    /// `Some("deployment")` for `deployment.*`: every type it matches starts with
    /// that whole first segment, so the snapshot can index it like an exact type.
    pub fn first_segment(&self) -> Option<&str> {
        let (segment, rest) = self.source.split_once('.')?;
        (self.kind == Kind::Prefix && rest == "*").then_some(segment)
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for EventPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (empty included)
/// and every other character matches itself, case-sensitively.
///
/// Greedy two-pointer matching: on a mismatch it only ever retries the most recent `*` one
/// character further, so the cost is at most `pattern.len() * text.len()` steps, never
/// exponential, and it allocates nothing. Comparing bytes is sound for UTF-8 text: a literal
/// run starts with a leading byte, so it can only line up on a character boundary.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*` seen: (pattern index after it, text index it swallows up to).
    let mut backtrack: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                backtrack = Some((p, t));
            }
            Some(&pc) if pc == c => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and try again from there.
                Some((after_star, swallowed)) => {
                    p = after_star;
                    t = swallowed + 1;
                    backtrack = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(s: &str) -> EventPattern {
        EventPattern::parse(s).unwrap()
    }

    #[test]
    fn only_a_whole_segment_prefix_has_a_first_segment() {
        let first = |p: &str| {
            EventPattern::parse(p)
                .unwrap()
                .first_segment()
                .map(str::to_owned)
        };
        assert_eq!(first("deployment.*").as_deref(), Some("deployment"));
        assert_eq!(first("deploy*"), None);
        assert_eq!(first("a.b.*"), None, "indexed by one segment only");
        assert_eq!(first("*"), None);
        assert_eq!(first("a.b"), None);
    }

    /// `source` matches every type in `yes` and none in `no`.
    fn assert_matching(source: &str, yes: &[&str], no: &[&str]) {
        let p = pattern(source);
        for t in yes {
            assert!(p.matches(t), "{source} should match {t}");
        }
        for t in no {
            assert!(!p.matches(t), "{source} should not match {t}");
        }
    }

    #[test]
    fn an_exact_pattern_matches_only_its_type() {
        assert_matching(
            "deployment.failed",
            &["deployment.failed"],
            &["deployment.failed.again", "deployment.faile", "deployment"],
        );
    }

    #[test]
    fn a_lone_star_matches_every_type() {
        assert_matching("*", &["deployment.failed", "a"], &[]);
        assert_eq!(pattern("*").exact(), None);
    }

    #[test]
    fn a_trailing_glob_matches_every_type_under_the_prefix() {
        assert_matching(
            "deployment.*",
            &["deployment.failed", "deployment.started.twice"],
            &["deployment", "deploymentx.failed", "testworkflow.end"],
        );
    }

    #[test]
    fn a_star_spans_dots() {
        assert_matching(
            "*.failed",
            &["deployment.failed", "testworkflow.step.failed"],
            &["deployment.failed.later", "failed"],
        );
    }

    #[test]
    fn stars_may_appear_anywhere() {
        assert_matching(
            "test*.end.*",
            &[
                "testworkflow.end.success",
                "test.end.failure",
                "testworkflow.step.end.x",
            ],
            &["testworkflow.end", "workflow.end.success"],
        );
    }

    #[test]
    fn patterns_are_lowercased_so_matching_ignores_case() {
        let p = pattern("Deployment.FAILED");
        assert_eq!(p.as_str(), "deployment.failed");
        assert_eq!(p.to_string(), "deployment.failed");
        assert!(p.matches("deployment.failed"));
        assert!(pattern("DEPLOY*").matches("deployment.failed"));
    }

    #[test]
    fn exact_is_some_only_without_a_star() {
        assert_eq!(
            pattern("Deployment.Failed").exact(),
            Some("deployment.failed")
        );
        assert_eq!(pattern("deployment.*").exact(), None);
        assert_eq!(pattern("*.failed").exact(), None);
        assert_eq!(pattern("**").exact(), None);
    }

    #[test]
    fn an_empty_pattern_is_refused() {
        assert_eq!(EventPattern::parse(""), Err(PatternError::Empty));
        assert_eq!(PatternError::Empty.to_string(), "event pattern is empty");
    }

    #[test]
    fn a_pattern_longer_than_an_event_type_is_refused() {
        assert!(EventPattern::parse(&"a".repeat(MAX_LEN)).is_ok());
        let err = EventPattern::parse(&"a".repeat(MAX_LEN + 1)).unwrap_err();
        assert_eq!(err, PatternError::TooLong { len: 129 });
        assert_eq!(
            err.to_string(),
            "event pattern is 129 characters long; the limit is 128"
        );
    }

    #[test]
    fn a_character_outside_the_alphabet_is_named_with_its_position() {
        let err = EventPattern::parse("deployment failed").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event pattern \"deployment failed\" has ' ' at position 11; \
             use letters, digits, '.', '_', '-' or '*'"
        );
        assert!(matches!(
            EventPattern::parse("déploiement"),
            Err(PatternError::InvalidChar {
                ch: 'é',
                position: 2,
                ..
            })
        ));
        assert!(EventPattern::parse("deployment/failed").is_err());
        assert!(EventPattern::parse("deployment?").is_err());
    }

    #[test]
    fn an_empty_segment_is_refused_because_nothing_could_match_it() {
        let err = EventPattern::parse("deployment..failed").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event pattern \"deployment..failed\" has an empty segment at position 12; \
             event types never start or end with '.' or contain \"..\""
        );
        assert!(matches!(
            EventPattern::parse(".failed"),
            Err(PatternError::EmptySegment { position: 1, .. })
        ));
        assert!(matches!(
            EventPattern::parse("deployment.*."),
            Err(PatternError::EmptySegment { position: 13, .. })
        ));
        assert!(EventPattern::parse("*.*").is_ok());
    }

    #[test]
    fn from_str_is_parse() {
        let p: EventPattern = "Deployment.*".parse().unwrap();
        assert_eq!(p, pattern("deployment.*"));
    }

    /// `glob` matches every text in `yes` and none in `no`.
    fn assert_glob(glob: &str, yes: &[&str], no: &[&str]) {
        for text in yes {
            assert!(glob_match(glob, text), "{glob:?} should match {text:?}");
        }
        for text in no {
            assert!(
                !glob_match(glob, text),
                "{glob:?} should not match {text:?}"
            );
        }
    }

    #[test]
    fn glob_match_is_case_sensitive_and_literal_without_stars() {
        assert_glob("product", &["product"], &["Product", "products"]);
        assert_glob("", &[""], &["a"]);
        assert_glob("*", &[""], &[]);
    }

    #[test]
    fn glob_match_handles_adjacent_and_repeated_stars() {
        assert_glob("a**b", &["ab"], &[]);
        assert_glob("*a*a*", &["banana"], &[]);
        assert_glob("*a*a*a*a*", &[], &["banana"]);
        assert_glob("product*", &["product-a"], &[]);
        assert_glob("*-a", &["product-a"], &[]);
    }

    #[test]
    fn glob_match_compares_non_ascii_text_byte_for_byte() {
        let text = "prød";
        assert!(glob_match("pr*d", text) && glob_match("*ø*", text));
        assert!(!glob_match("*o*", text), "ø is not o");
    }

    #[test]
    fn a_pathological_glob_finishes_quickly() {
        // Exponential backtracking would never finish this.
        let pattern = format!("{}b", "*a".repeat(60));
        let text = "a".repeat(10_000);
        assert!(!glob_match(&pattern, &text));
    }

    /// The textbook recursive definition, slow but obviously right.
    fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| naive_glob(rest, &text[skip..])),
            Some((c, rest)) => text.first() == Some(c) && naive_glob(rest, &text[1..]),
        }
    }

    /// Valid lowercase event types.
    fn event_type() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-c0-9_-]{1,4}", 1..4).prop_map(|segments| segments.join("."))
    }

    /// Valid patterns, upper case included, built from the same small alphabet as
    /// `event_type` so that matches are common.
    fn pattern_source() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-cA-C0-9_*-]{1,4}", 1..4).prop_map(|segments| segments.join("."))
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_keeps_only_valid_lowercase_patterns(s in "\\PC{0,140}|[a-zA-Z0-9._*-]{0,140}") {
            if let Ok(p) = EventPattern::parse(&s) {
                prop_assert!(!p.as_str().is_empty() && p.as_str().len() <= MAX_LEN);
                prop_assert_eq!(p.as_str(), s.to_ascii_lowercase());
                prop_assert!(!p.as_str().bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn parsing_the_display_gives_back_the_same_pattern(s in pattern_source()) {
            let p = EventPattern::parse(&s).unwrap();
            prop_assert_eq!(EventPattern::parse(&p.to_string()).unwrap(), p);
        }

        #[test]
        fn matches_agrees_with_the_naive_definition(s in pattern_source(), event_type in event_type()) {
            let p = EventPattern::parse(&s).unwrap();
            let expected = naive_glob(s.to_ascii_lowercase().as_bytes(), event_type.as_bytes());
            prop_assert_eq!(p.matches(&event_type), expected);
        }

        #[test]
        fn glob_match_agrees_with_the_naive_definition(pattern in "[ab*.]{0,10}", text in "[ab.]{0,12}") {
            prop_assert_eq!(
                glob_match(&pattern, &text),
                naive_glob(pattern.as_bytes(), text.as_bytes())
            );
        }

        #[test]
        fn an_exact_pattern_matches_the_type_it_names(event_type in event_type()) {
            let p = EventPattern::parse(&event_type.to_ascii_uppercase()).unwrap();
            prop_assert_eq!(p.exact(), Some(event_type.as_str()));
            prop_assert!(p.matches(&event_type));
        }
    }
}
