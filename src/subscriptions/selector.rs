//! Label selectors: a subscription's `selector`, in Kubernetes label-selector syntax with `*`
//! globs in values (`env in (prod,staging), project=product*, !draft`). Parsed once when a
//! subscription is saved or loaded; fan-out asks it about an event's `labels` after the event
//! type matched one of the subscription's patterns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::subscriptions::pattern::glob_match;

/// Longest label name or value (Kubernetes).
const MAX_NAME_LEN: usize = 63;
/// Longest key prefix, a DNS subdomain.
const MAX_PREFIX_LEN: usize = 253;

/// A parsed label selector: requirements that must all hold. The empty selector matches every
/// event.
///
/// Displays in a canonical form that parses back to an equal selector: requirements in the
/// order written, `=` for `==`, no spaces except around `in` and `notin`, and `in`/`notin`
/// values sorted without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
}

/// Values may hold `*` globs; list values are sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// Why a string is not a label selector. `position` is the 1-based character column of the
/// offending token (one past the end when the selector stopped too early); `found` describes
/// that token, such as `'='`, `"prod"` or `the end of the selector`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("expected a label key at position {position}, found {found}")]
    ExpectedKey { found: String, position: usize },
    #[error("invalid label key {key:?} at position {position}: {reason}")]
    InvalidKey {
        key: String,
        position: usize,
        reason: String,
    },
    #[error(
        "expected '=', '==', '!=', 'in', 'notin', ',' or the end of the selector after {key:?} \
         at position {position}, found {found}"
    )]
    ExpectedOperator {
        key: String,
        found: String,
        position: usize,
    },
    #[error("expected '(' after '{key} {operator}' at position {position}, found {found}")]
    ExpectedOpenParen {
        key: String,
        operator: &'static str,
        found: String,
        position: usize,
    },
    #[error(
        "'{key} {operator}' needs at least one value between the parentheses at position {position}"
    )]
    EmptyValueList {
        key: String,
        operator: &'static str,
        position: usize,
    },
    #[error("expected a value for {key:?} at position {position}, found {found}")]
    ExpectedValue {
        key: String,
        found: String,
        position: usize,
    },
    #[error("invalid value {value:?} for {key:?} at position {position}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        position: usize,
        reason: String,
    },
    #[error("expected ',' or ')' after values of {key:?} at position {position}, found {found}")]
    ExpectedCloseParen {
        key: String,
        found: String,
        position: usize,
    },
    #[error(
        "expected ',' or the end of the selector after the requirement on {key:?} \
         at position {position}, found {found}"
    )]
    ExpectedComma {
        key: String,
        found: String,
        position: usize,
    },
}

impl Selector {
    /// Parses a selector; an empty or all-whitespace string gives the empty selector.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            lexer: Lexer { src: s, at: 0 },
        };
        let mut requirements = Vec::new();
        if parser.lexer.peek().token == Token::End {
            return Ok(Self { requirements });
        }
        loop {
            let requirement = parser.requirement()?;
            let next = parser.lexer.next();
            match next.token {
                Token::Comma => requirements.push(requirement),
                Token::End => {
                    requirements.push(requirement);
                    return Ok(Self { requirements });
                }
                _ => {
                    return Err(SelectorError::ExpectedComma {
                        key: requirement.key,
                        found: next.token.describe(),
                        position: parser.lexer.column(next.at),
                    });
                }
            }
        }
    }

    /// Whether every requirement holds for `labels`. Like Kubernetes, `!=` and `notin` hold
    /// when the label is absent. Values compare case-sensitively.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector has no requirements and so matches every event.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// A label key and the literal values one of which it must hold for the selector to
    /// match, so the snapshot can find the subscription by the event's label instead of
    /// asking every selector. The first `=` wins over the first `in`: one value narrows
    /// more than several. Globbed values are never literal, so they never qualify.
    pub fn required_label(&self) -> Option<(&str, Vec<&str>)> {
        let equality = self.requirements.iter().find_map(|r| match &r.op {
            Operator::Equals(value) if is_literal(value) => {
                Some((r.key.as_str(), vec![value.as_str()]))
            }
            _ => None,
        });
        equality.or_else(|| {
            self.requirements.iter().find_map(|r| match &r.op {
                Operator::In(values) if values.iter().all(|v| is_literal(v)) => {
                    Some((r.key.as_str(), values.iter().map(String::as_str).collect()))
                }
                _ => None,
            })
        })
    }
}

/// A value without `*` matches exactly itself (see `glob_match`).
fn is_literal(value: &str) -> bool {
    !value.contains('*')
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key).map(String::as_str);
        let any_of = |values: &[String]| {
            label.is_some_and(|label| values.iter().any(|v| glob_match(v, label)))
        };
        match &self.op {
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::Equals(value) => label.is_some_and(|label| glob_match(value, label)),
            Operator::NotEquals(value) => !label.is_some_and(|label| glob_match(value, label)),
            Operator::In(values) => any_of(values),
            Operator::NotIn(values) => !any_of(values),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.op {
            Operator::Exists => f.write_str(key),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Equals(value) => write!(f, "{key}={value}"),
            Operator::NotEquals(value) => write!(f, "{key}!={value}"),
            Operator::In(values) => write!(f, "{key} in ({})", values.join(",")),
            Operator::NotIn(values) => write!(f, "{key} notin ({})", values.join(",")),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, Copy)]
struct Lexed<'a> {
    token: Token<'a>,
    at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A run of anything but whitespace and `,()=!`: a key, a value, `in` or `notin`.
    /// Which one it is depends on where it stands, so `in` can still be a label key.
    Word(&'a str),
    Comma,
    OpenParen,
    CloseParen,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("{word:?}"),
            Token::Comma => "','".to_owned(),
            Token::OpenParen => "'('".to_owned(),
            Token::CloseParen => "')'".to_owned(),
            Token::Equals => "'='".to_owned(),
            Token::DoubleEquals => "'=='".to_owned(),
            Token::NotEquals => "'!='".to_owned(),
            Token::Bang => "'!'".to_owned(),
            Token::End => "the end of the selector".to_owned(),
        }
    }
}

/// Every character belongs to some token, so lexing cannot fail; the parser judges the words.
struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    at: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Lexed<'a> {
        let rest = self.src.get(self.at..).unwrap_or_default();
        let trimmed = rest.trim_start();
        let start = self.at + (rest.len() - trimmed.len());
        let mut chars = trimmed.chars();
        let (token, len) = match chars.next() {
            None => (Token::End, 0),
            Some(',') => (Token::Comma, 1),
            Some('(') => (Token::OpenParen, 1),
            Some(')') => (Token::CloseParen, 1),
            Some('=') if chars.next() == Some('=') => (Token::DoubleEquals, 2),
            Some('=') => (Token::Equals, 1),
            Some('!') if chars.next() == Some('=') => (Token::NotEquals, 2),
            Some('!') => (Token::Bang, 1),
            Some(_) => {
                let len = trimmed
                    .find(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '=' | '!'))
                    .unwrap_or(trimmed.len());
                (Token::Word(trimmed.get(..len).unwrap_or_default()), len)
            }
        };
        self.at = start + len;
        Lexed { token, at: start }
    }

    fn peek(&self) -> Lexed<'a> {
        Lexer {
            src: self.src,
            at: self.at,
        }
        .next()
    }

    /// The 1-based character column of a byte offset, for error messages.
    fn column(&self, at: usize) -> usize {
        self.src
            .get(..at)
            .map_or(0, |before| before.chars().count())
            + 1
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
}

impl Parser<'_> {
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let first = self.lexer.next();
        match first.token {
            Token::Bang => {
                let lexed = self.lexer.next();
                let key = self.key(lexed)?;
                Ok(Requirement {
                    key,
                    op: Operator::DoesNotExist,
                })
            }
            Token::Word(_) => {
                let key = self.key(first)?;
                let op = self.operator(&key)?;
                Ok(Requirement { key, op })
            }
            _ => Err(self.expected_key(first)),
        }
    }

    /// Everything after the key: the operator and its values, or nothing for "exists".
    fn operator(&mut self, key: &str) -> Result<Operator, SelectorError> {
        let next = self.lexer.peek();
        match next.token {
            Token::Comma | Token::End => Ok(Operator::Exists),
            Token::Equals | Token::DoubleEquals => {
                self.lexer.next();
                Ok(Operator::Equals(self.single_value(key)?))
            }
            Token::NotEquals => {
                self.lexer.next();
                Ok(Operator::NotEquals(self.single_value(key)?))
            }
            Token::Word("in") => {
                self.lexer.next();
                Ok(Operator::In(self.value_list(key, "in")?))
            }
            Token::Word("notin") => {
                self.lexer.next();
                Ok(Operator::NotIn(self.value_list(key, "notin")?))
            }
            _ => Err(SelectorError::ExpectedOperator {
                key: key.to_owned(),
                found: next.token.describe(),
                position: self.lexer.column(next.at),
            }),
        }
    }

    fn key(&self, lexed: Lexed<'_>) -> Result<String, SelectorError> {
        let Token::Word(key) = lexed.token else {
            return Err(self.expected_key(lexed));
        };
        check_key(key).map_err(|reason| SelectorError::InvalidKey {
            key: key.to_owned(),
            position: self.lexer.column(lexed.at),
            reason,
        })?;
        Ok(key.to_owned())
    }

    fn expected_key(&self, lexed: Lexed<'_>) -> SelectorError {
        SelectorError::ExpectedKey {
            found: lexed.token.describe(),
            position: self.lexer.column(lexed.at),
        }
    }

    /// The value after `=`, `==` or `!=`; nothing before a `,` or the end is the empty value.
    fn single_value(&mut self, key: &str) -> Result<String, SelectorError> {
        let next = self.lexer.peek();
        match next.token {
            Token::Comma | Token::End => Ok(String::new()),
            _ => {
                let lexed = self.lexer.next();
                self.value(key, lexed)
            }
        }
    }

    /// `( value, ... )`, sorted and deduplicated. Unlike Kubernetes, an empty entry such as the
    /// one in `(a,)` is an error: it is far more often a typo than a wish to match "".
    fn value_list(
        &mut self,
        key: &str,
        operator: &'static str,
    ) -> Result<Vec<String>, SelectorError> {
        let open = self.lexer.next();
        if open.token != Token::OpenParen {
            return Err(SelectorError::ExpectedOpenParen {
                key: key.to_owned(),
                operator,
                found: open.token.describe(),
                position: self.lexer.column(open.at),
            });
        }
        if self.lexer.peek().token == Token::CloseParen {
            return Err(SelectorError::EmptyValueList {
                key: key.to_owned(),
                operator,
                position: self.lexer.column(open.at),
            });
        }
        let mut values = Vec::new();
        loop {
            let lexed = self.lexer.next();
            values.push(self.value(key, lexed)?);
            let next = self.lexer.next();
            match next.token {
                Token::Comma => {}
                Token::CloseParen => break,
                _ => {
                    return Err(SelectorError::ExpectedCloseParen {
                        key: key.to_owned(),
                        found: next.token.describe(),
                        position: self.lexer.column(next.at),
                    });
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    fn value(&self, key: &str, lexed: Lexed<'_>) -> Result<String, SelectorError> {
        let Token::Word(value) = lexed.token else {
            return Err(SelectorError::ExpectedValue {
                key: key.to_owned(),
                found: lexed.token.describe(),
                position: self.lexer.column(lexed.at),
            });
        };
        check_value(value).map_err(|reason| SelectorError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            position: self.lexer.column(lexed.at),
            reason,
        })?;
        Ok(value.to_owned())
    }
}

/// Kubernetes label-key rules: an optional DNS-subdomain prefix and `/`, then a name.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err("a key holds at most one '/'".to_owned());
            }
            check_prefix(prefix)?;
            if name.is_empty() {
                return Err("the name after '/' is empty".to_owned());
            }
            name
        }
    };
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "the name is {len} characters long; the limit is {MAX_NAME_LEN}"
        ));
    }
    if let Some(ch) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(if ch == '*' {
            "'*' is not allowed in a key; globs only apply to values".to_owned()
        } else {
            format!("{ch:?} is not allowed; a key uses letters, digits, '-', '_' and '.'")
        });
    }
    if !starts_and_ends_with(name, |c| c.is_ascii_alphanumeric()) {
        return Err("the name must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// A DNS subdomain (RFC 1123): dot-separated parts of lowercase letters, digits and `-`,
/// each starting and ending with a letter or digit.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the prefix before '/' is empty".to_owned());
    }
    let len = prefix.chars().count();
    if len > MAX_PREFIX_LEN {
        return Err(format!(
            "the prefix is {len} characters long; the limit is {MAX_PREFIX_LEN}"
        ));
    }
    if let Some(ch) = prefix
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "{ch:?} is not allowed in the prefix, a DNS subdomain of lowercase letters, \
             digits, '-' and '.'"
        ));
    }
    if !prefix
        .split('.')
        .all(|part| starts_and_ends_with(part, |c| c.is_ascii_alphanumeric()))
    {
        return Err(
            "each dot-separated part of the prefix must start and end with a letter or digit"
                .to_owned(),
        );
    }
    Ok(())
}

/// Kubernetes label-value rules, with `*` allowed anywhere as a glob.
fn check_value(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "the value is {len} characters long; the limit is {MAX_NAME_LEN}"
        ));
    }
    if let Some(ch) = value.chars().find(|&c| !(is_name_char(c) || c == '*')) {
        return Err(format!(
            "{ch:?} is not allowed; a value uses letters, digits, '-', '_', '.' and '*'"
        ));
    }
    if !value.is_empty() && !starts_and_ends_with(value, |c| c.is_ascii_alphanumeric() || c == '*')
    {
        return Err("the value must start and end with a letter, digit or '*'".to_owned());
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// False for the empty string.
fn starts_and_ends_with(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    s.chars().next().is_some_and(&allowed) && s.chars().next_back().is_some_and(&allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn selector(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn error(s: &str) -> String {
        Selector::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let sel = selector(s);
            assert!(sel.is_empty());
            assert!(sel.matches(&labels(&[])));
            assert!(sel.matches(&labels(&[("env", "prod")])));
            assert_eq!(sel.to_string(), "");
        }
        assert!(Selector::default().is_empty());
    }

    #[test]
    fn equals_and_double_equals_match_the_same_value() {
        for s in ["env=prod", "env==prod", " env = prod ", "env == prod"] {
            let sel = selector(s);
            assert!(!sel.is_empty());
            assert!(sel.matches(&labels(&[("env", "prod")])), "{s}");
            assert!(!sel.matches(&labels(&[("env", "dev")])), "{s}");
            assert!(!sel.matches(&labels(&[])), "{s}");
            assert_eq!(sel.to_string(), "env=prod");
        }
    }

    /// `source` matches every label set in `yes` and none in `no`; a set is
    /// written `k=v,k=v` (`""` for no labels).
    fn assert_matching(source: &str, yes: &[&str], no: &[&str]) {
        let sel = selector(source);
        let set = |text: &str| -> BTreeMap<String, String> {
            let pairs = text.split(',').filter(|p| !p.is_empty());
            pairs
                .map(|p| p.split_once('=').unwrap())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        for text in yes {
            assert!(sel.matches(&set(text)), "{source} should match {text:?}");
        }
        for text in no {
            assert!(
                !sel.matches(&set(text)),
                "{source} should not match {text:?}"
            );
        }
    }

    #[test]
    fn values_compare_case_sensitively() {
        assert_matching("env=Prod", &["env=Prod"], &["env=prod"]);
        assert_matching("Env=Prod", &[], &["env=Prod"]);
    }

    #[test]
    fn not_equals_matches_a_different_or_absent_label() {
        assert_matching("env!=prod", &["env=dev", ""], &["env=prod"]);
    }

    #[test]
    fn in_matches_any_listed_value() {
        let sel = "env in (prod, staging)";
        assert_matching(sel, &["env=prod", "env=staging"], &["env=dev", ""]);
    }

    #[test]
    fn notin_matches_an_unlisted_or_absent_label() {
        assert_matching(
            "env notin (prod,staging)",
            &["env=dev", ""],
            &["env=staging"],
        );
    }

    #[test]
    fn a_bare_key_requires_the_label_and_a_bang_forbids_it() {
        let exists = selector("draft");
        let absent = selector("! draft");
        let with = labels(&[("draft", "")]);
        let without = labels(&[("env", "prod")]);
        assert!(exists.matches(&with) && !exists.matches(&without));
        assert!(!absent.matches(&with) && absent.matches(&without));
        assert_eq!(absent.to_string(), "!draft");
    }

    #[test]
    fn an_empty_value_matches_an_empty_label() {
        let sel = selector("draft=,env=prod");
        assert!(sel.matches(&labels(&[("draft", ""), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("draft", "yes"), ("env", "prod")])));
        assert_eq!(sel.to_string(), "draft=,env=prod");
    }

    #[test]
    fn a_glob_value_matches_a_prefix() {
        let sel = "project=product*";
        assert_matching(
            sel,
            &["project=product-a", "project=product"],
            &["project=prod"],
        );
    }

    #[test]
    fn globs_work_in_every_value_position() {
        let project = |p| labels(&[("project", p)]);
        assert!(selector("project!=*-test").matches(&project("shop")));
        assert!(!selector("project!=*-test").matches(&project("shop-test")));
        assert!(selector("project in (a*, *z)").matches(&project("quiz")));
        assert!(!selector("project notin (*)").matches(&project("")));
        assert!(selector("project=*").matches(&project("")));
        assert!(!selector("project=*").matches(&labels(&[])));
    }

    #[test]
    fn commas_join_requirements_with_and() {
        let sel = selector("env in (prod,staging), project=product*, !draft, team");
        assert!(sel.matches(&labels(&[
            ("env", "prod"),
            ("project", "product-a"),
            ("team", "ops"),
        ])));
        assert!(!sel.matches(&labels(&[
            ("env", "prod"),
            ("project", "product-a"),
            ("team", "ops"),
            ("draft", "true"),
        ])));
        assert!(!sel.matches(&labels(&[("env", "prod"), ("project", "product-a")])));
    }

    #[test]
    fn display_is_canonical() {
        let sel = selector(" b == 2 ,a notin(z, y, z),c in ( x ) , ! d,e ");
        assert_eq!(sel.to_string(), "b=2,a notin (y,z),c in (x),!d,e");
        assert_eq!(selector(&sel.to_string()), sel);
    }

    #[test]
    fn prefixed_keys_follow_kubernetes_rules() {
        let sel = selector("app.kubernetes.io/name=herald");
        assert!(sel.matches(&labels(&[("app.kubernetes.io/name", "herald")])));
        assert!(Selector::parse("example.com/My_Key.1").is_ok());
        assert!(Selector::parse(&format!("{}=x", "k".repeat(63))).is_ok());
    }

    #[test]
    fn in_and_notin_can_still_be_label_keys() {
        let sel = selector("in in (a),notin");
        assert!(sel.matches(&labels(&[("in", "a"), ("notin", "")])));
        assert_eq!(selector(&sel.to_string()), sel);
    }

    #[test]
    fn a_missing_close_paren_names_the_key_and_position() {
        assert_eq!(
            error("env in (prod, dev"),
            "expected ',' or ')' after values of \"env\" at position 18, \
             found the end of the selector"
        );
        assert_eq!(
            error("env in (prod dev)"),
            "expected ',' or ')' after values of \"env\" at position 14, found \"dev\""
        );
    }

    #[test]
    fn in_without_parentheses_or_values_is_refused() {
        assert_eq!(
            error("env in prod"),
            "expected '(' after 'env in' at position 8, found \"prod\""
        );
        assert_eq!(
            error("env notin ( )"),
            "'env notin' needs at least one value between the parentheses at position 11"
        );
        assert_eq!(
            error("env in (prod,)"),
            "expected a value for \"env\" at position 14, found ')'"
        );
        assert_eq!(
            error("env in (,prod)"),
            "expected a value for \"env\" at position 9, found ','"
        );
    }

    #[test]
    fn a_dangling_comma_or_operator_is_refused() {
        assert_eq!(
            error("env=prod,"),
            "expected a label key at position 10, found the end of the selector"
        );
        assert_eq!(
            error(",env"),
            "expected a label key at position 1, found ','"
        );
        assert_eq!(
            error("=prod"),
            "expected a label key at position 1, found '='"
        );
        assert_eq!(
            error("!"),
            "expected a label key at position 2, found the end of the selector"
        );
        assert_eq!(
            error("env=(prod)"),
            "expected a value for \"env\" at position 5, found '('"
        );
    }

    #[test]
    fn something_after_a_requirement_must_be_a_comma() {
        assert_eq!(
            error("env=prod staging"),
            "expected ',' or the end of the selector after the requirement on \"env\" \
             at position 10, found \"staging\""
        );
        assert_eq!(
            error("!env=prod"),
            "expected ',' or the end of the selector after the requirement on \"env\" \
             at position 5, found '='"
        );
        assert!(Selector::parse("a=b=c").is_err());
    }

    #[test]
    fn an_unknown_operator_is_named() {
        assert_eq!(
            error("env ~ prod"),
            "expected '=', '==', '!=', 'in', 'notin', ',' or the end of the selector \
             after \"env\" at position 5, found \"~\""
        );
        assert!(Selector::parse("env (prod)").is_err());
        assert!(Selector::parse("env =! prod").is_err());
    }

    #[test]
    fn a_bad_key_says_what_is_wrong() {
        assert_eq!(
            error("env-=prod"),
            "invalid label key \"env-\" at position 1: \
             the name must start and end with a letter or digit"
        );
        assert_eq!(
            error("a=b, env*=prod"),
            "invalid label key \"env*\" at position 6: \
             '*' is not allowed in a key; globs only apply to values"
        );
        assert_eq!(
            error("Example.com/env"),
            "invalid label key \"Example.com/env\" at position 1: 'E' is not allowed in the \
             prefix, a DNS subdomain of lowercase letters, digits, '-' and '.'"
        );
        assert_eq!(
            error(&"k".repeat(64)),
            format!(
                "invalid label key \"{}\" at position 1: \
                 the name is 64 characters long; the limit is 63",
                "k".repeat(64)
            )
        );
        for bad in ["/env", "example.com/", "a/b/c", "a..b/env", "-a/env", "ünï"] {
            assert!(
                matches!(Selector::parse(bad), Err(SelectorError::InvalidKey { .. })),
                "{bad}"
            );
        }
        assert!(Selector::parse(&format!("{}/env", "a".repeat(254))).is_err());
        assert!(Selector::parse(&format!("{}/env", "a".repeat(253))).is_ok());
    }

    #[test]
    fn a_bad_value_says_what_is_wrong() {
        assert_eq!(
            error("env=-prod"),
            "invalid value \"-prod\" for \"env\" at position 5: \
             the value must start and end with a letter, digit or '*'"
        );
        assert_eq!(
            error("env in (prod, st/ging)"),
            "invalid value \"st/ging\" for \"env\" at position 15: \
             '/' is not allowed; a value uses letters, digits, '-', '_', '.' and '*'"
        );
        assert!(Selector::parse(&format!("env={}", "v".repeat(63))).is_ok());
        assert!(Selector::parse(&format!("env={}", "v".repeat(64))).is_err());
        assert!(Selector::parse("env=*-prod-*").is_ok());
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            error("é=1"),
            "invalid label key \"é\" at position 1: \
             'é' is not allowed; a key uses letters, digits, '-', '_' and '.'"
        );
        assert!(error("env=ü,x").contains("at position 5"));
        // A no-break space is whitespace, two bytes long.
        assert!(error("a=b\u{a0}c").contains("at position 5"));
    }

    #[test]
    fn the_required_label_is_the_first_literal_equality_then_the_first_literal_in() {
        let required = |s: &str| {
            selector(s)
                .required_label()
                .map(|(k, vs)| (k.to_owned(), vs.join("|")))
        };
        let pair = |k: &str, v: &str| Some((k.to_owned(), v.to_owned()));
        assert_eq!(required("env=prod,team=a"), pair("env", "prod"));
        assert_eq!(required("env in (dev,prod),team==a"), pair("team", "a"));
        assert_eq!(required("env in (prod,dev),!skip"), pair("env", "dev|prod"));
        assert_eq!(required("project=p1*,team=a"), pair("team", "a"));
        assert_eq!(required("env="), pair("env", ""));
        assert_eq!(required("project=p1*,env in (prod,st*)"), None);
        assert_eq!(required("env!=dev,env notin (qa),team,!skip"), None);
        assert_eq!(required(""), None);
    }

    #[test]
    fn from_str_is_parse() {
        let sel: Selector = "env=prod".parse().unwrap();
        assert_eq!(sel, selector("env=prod"));
    }

    /// A requirement as the tests see it, rendered to text and evaluated independently.
    #[derive(Debug, Clone)]
    enum Model {
        Exists(String),
        DoesNotExist(String),
        Equals(String, String),
        NotEquals(String, String),
        In(String, Vec<String>),
        NotIn(String, Vec<String>),
    }

    /// The textbook recursive glob, slow but obviously right.
    fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| naive_glob(rest, &text[skip..])),
            Some((c, rest)) => text.first() == Some(c) && naive_glob(rest, &text[1..]),
        }
    }

    fn model_matches(model: &Model, labels: &BTreeMap<String, String>) -> bool {
        let is = |k: &String, v: &String| {
            labels
                .get(k)
                .is_some_and(|l| naive_glob(v.as_bytes(), l.as_bytes()))
        };
        match model {
            Model::Exists(k) => labels.contains_key(k),
            Model::DoesNotExist(k) => !labels.contains_key(k),
            Model::Equals(k, v) => is(k, v),
            Model::NotEquals(k, v) => !is(k, v),
            Model::In(k, vs) => vs.iter().any(|v| is(k, v)),
            Model::NotIn(k, vs) => !vs.iter().any(|v| is(k, v)),
        }
    }

    /// Renders with the given spacing and `=` or `==`, to exercise the parser's leniency.
    fn render(model: &Model, space: &str, double: bool) -> String {
        let eq = if double { "==" } else { "=" };
        match model {
            Model::Exists(k) => format!("{space}{k}{space}"),
            Model::DoesNotExist(k) => format!("{space}!{space}{k}"),
            Model::Equals(k, v) => format!("{k}{space}{eq}{space}{v}"),
            Model::NotEquals(k, v) => format!("{k}{space}!={space}{v}"),
            Model::In(k, vs) => format!("{k} in{space}({})", vs.join(&format!("{space},"))),
            Model::NotIn(k, vs) => {
                format!("{k} notin{space}({space}{}{space})", vs.join(","))
            }
        }
    }

    fn model() -> impl Strategy<Value = Model> {
        let key = || prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
        let value = || "[xy*]{0,3}";
        let values = || prop::collection::vec("[xy*]{1,3}", 1..4);
        prop_oneof![
            key().prop_map(Model::Exists),
            key().prop_map(Model::DoesNotExist),
            (key(), value()).prop_map(|(k, v)| Model::Equals(k, v)),
            (key(), value()).prop_map(|(k, v)| Model::NotEquals(k, v)),
            (key(), values()).prop_map(|(k, vs)| Model::In(k, vs)),
            (key(), values()).prop_map(|(k, vs)| Model::NotIn(k, vs)),
        ]
    }

    fn label_set() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]),
            "[xy]{0,3}",
            0..4,
        )
    }

    /// Valid keys, with and without a prefix.
    fn key() -> impl Strategy<Value = String> {
        let name = "[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?";
        let prefix = prop::collection::vec("[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?", 1..3)
            .prop_map(|parts| parts.join("."));
        (prop::option::of(prefix), name).prop_map(|(prefix, name)| match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name,
        })
    }

    fn value() -> impl Strategy<Value = String> {
        "([A-Za-z0-9*]([A-Za-z0-9_.*-]{0,8}[A-Za-z0-9*])?)?"
    }

    /// Requirements in canonical form (list values sorted and deduplicated).
    fn requirement() -> impl Strategy<Value = Requirement> {
        let list = || {
            prop::collection::btree_set(value().prop_filter("non-empty", |v| !v.is_empty()), 1..4)
                .prop_map(|set| set.into_iter().collect::<Vec<_>>())
        };
        let op = prop_oneof![
            Just(Operator::Exists),
            Just(Operator::DoesNotExist),
            value().prop_map(Operator::Equals),
            value().prop_map(Operator::NotEquals),
            list().prop_map(Operator::In),
            list().prop_map(Operator::NotIn),
        ];
        (key(), op).prop_map(|(key, op)| Requirement { key, op })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}|[a-c =!(),*./\\-in ]{0,40}") {
            if let Ok(sel) = Selector::parse(&s) {
                // Whatever parses displays as something that parses back to it.
                prop_assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
            }
        }

        #[test]
        fn parsing_the_display_gives_back_the_same_selector(
            requirements in prop::collection::vec(requirement(), 0..5)
        ) {
            let sel = Selector { requirements };
            prop_assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }

        #[test]
        fn matches_agrees_with_a_naive_reference(
            models in prop::collection::vec(model(), 0..4),
            space in "[ \t]{0,2}",
            double in any::<bool>(),
            labels in label_set(),
        ) {
            let text = models
                .iter()
                .map(|m| render(m, &space, double))
                .collect::<Vec<_>>()
                .join(&format!("{space},{space}"));
            let sel = Selector::parse(&text).unwrap();
            let expected = models.iter().all(|m| model_matches(m, &labels));
            prop_assert_eq!(sel.matches(&labels), expected, "selector {:?}", text);
        }

        /// What the snapshot's label index relies on: a selector never matches an event
        /// whose required label is missing or holds another value.
        #[test]
        fn a_match_always_has_the_required_label(
            models in prop::collection::vec(model(), 0..4),
            labels in label_set(),
        ) {
            let text = models.iter().map(|m| render(m, "", false)).collect::<Vec<_>>().join(",");
            let sel = Selector::parse(&text).unwrap();
            if let (true, Some((key, values))) = (sel.matches(&labels), sel.required_label()) {
                let label = labels.get(key).map(String::as_str);
                prop_assert!(label.is_some_and(|l| values.contains(&l)), "selector {:?}", text);
            }
        }
    }
}
