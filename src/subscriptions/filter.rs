//! Payload filters: a subscription's `filter`, a small expression over the event's attributes
//! and `data` (`data.status == "failed" and labels.env in ["prod", "qa"]`), checked when saved,
//! parsed once per snapshot and asked by fan-out after the type and labels matched. Nothing in
//! it iterates over the event: an evaluation costs in proportion to the filter, not to `data`.

use std::{cell::OnceCell, cmp::Ordering, fmt, str::FromStr};

use serde_json::{Number, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::event::Event;

/// Longest filter, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not`; keeps the parser's and the evaluator's
/// recursion far from the stack's end.
pub const MAX_DEPTH: usize = 32;

/// The attributes a filter may name, as the README lists them.
const ROOTS: &str = "id, type, source, time, labels and data";
const EXAMPLE_TIME: &str = "\"2026-01-02T03:04:05Z\"";

/// A parsed filter. Past `parse`, every comparison is of a field with a literal that field
/// can be compared with (`type` with strings, `time` with instants), so evaluating needs no
/// checks beyond what the event holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Exists(Path),
    Compare {
        path: Path,
        op: CompareOp,
        value: Literal,
    },
    In {
        path: Path,
        values: Vec<Literal>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Path {
    Id,
    Type,
    Source,
    Time,
    Label(String),
    Data(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    /// A string literal compared with `time`, read as RFC 3339 when parsed.
    Time(OffsetDateTime),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Why a string is not a filter. `position` is the 1-based character column of the
/// offending token (one past the end when the filter stopped too early).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("is {len} bytes long; a filter is at most {MAX_LEN}")]
    TooLong { len: usize },
    #[error("nests parentheses and `not` deeper than {MAX_DEPTH} levels at position {position}")]
    TooDeep { position: usize },
    #[error("{message} at position {position}")]
    Invalid { message: String, position: usize },
}

/// The event as a filter sees it. `data` is parsed on first use and kept, so an event is
/// parsed at most once however many filters look at it, and never when none does.
pub struct Subject<'e> {
    event: &'e Event,
    data: OnceCell<Option<Value>>,
}

impl<'e> Subject<'e> {
    pub fn new(event: &'e Event) -> Self {
        Self {
            event,
            data: OnceCell::new(),
        }
    }

    pub fn event(&self) -> &'e Event {
        self.event
    }

    /// The parsed `data`; `None` when the event has none. It was valid JSON when the
    /// event was decoded, so a parse error cannot happen; were it to, the filter would
    /// see no `data` rather than fail the event.
    fn data(&self) -> Option<&Value> {
        self.data
            .get_or_init(|| {
                let raw = self.event.data.as_ref()?;
                serde_json::from_str(raw.get()).ok()
            })
            .as_ref()
    }
}

impl Filter {
    /// Parses a filter. The empty string is not one: `input` treats an empty `filter` as
    /// none before it gets here.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        if text.len() > MAX_LEN {
            return Err(FilterError::TooLong { len: text.len() });
        }
        let mut parser = Parser {
            text,
            tokens: lex(text)?,
            next: 0,
            depth: 0,
        };
        let root = parser.any()?;
        let (token, at) = parser.peek();
        if *token != Token::End {
            let found = token.describe();
            return Err(parser.invalid(
                at,
                format!("expected `and`, `or` or the end of the filter, found {found}"),
            ));
        }
        Ok(Self { root })
    }

    /// Whether the event passes: `Some(true)` or `Some(false)`, or `None` when the filter
    /// cannot tell (it compared a field the event lacks, or ordered unlike types), which
    /// fan-out takes as no match. `and` and `or` decide without an unknown side when the
    /// other side does (Kleene logic, like CEL's `&&` and `||`).
    pub fn evaluate(&self, subject: &Subject<'_>) -> Option<bool> {
        self.root.evaluate(subject)
    }
}

impl Node {
    fn evaluate(&self, subject: &Subject<'_>) -> Option<bool> {
        match self {
            Self::All(terms) => {
                let mut known = true;
                for term in terms {
                    match term.evaluate(subject) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => known = false,
                    }
                }
                known.then_some(true)
            }
            Self::Any(terms) => {
                let mut known = true;
                for term in terms {
                    match term.evaluate(subject) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => known = false,
                    }
                }
                known.then_some(false)
            }
            Self::Not(term) => term.evaluate(subject).map(|verdict| !verdict),
            Self::Exists(path) => Some(path.resolve(subject).is_some()),
            Self::Compare { path, op, value } => {
                let found = path.resolve(subject)?;
                match (order(&found, value), op) {
                    (Some(ordering), op) => Some(op.admits(ordering)),
                    // Unlike types are unequal; only ordering them is unknown.
                    (None, CompareOp::Eq) => Some(false),
                    (None, CompareOp::Ne) => Some(true),
                    (None, _) => None,
                }
            }
            Self::In { path, values } => {
                let found = path.resolve(subject)?;
                Some(
                    values
                        .iter()
                        .any(|v| order(&found, v) == Some(Ordering::Equal)),
                )
            }
        }
    }
}

/// A field's value in the event.
enum Found<'a> {
    String(&'a str),
    Time(OffsetDateTime),
    Json(&'a Value),
}

impl Path {
    /// The field's value; `None` when the event has no such field.
    fn resolve<'a>(&self, subject: &'a Subject<'_>) -> Option<Found<'a>> {
        let event = subject.event;
        match self {
            Self::Id => Some(Found::String(&event.id)),
            Self::Type => Some(Found::String(&event.event_type)),
            Self::Source => event.source.as_deref().map(Found::String),
            Self::Time => Some(Found::Time(event.time)),
            Self::Label(key) => event.labels.get(key).map(|v| Found::String(v)),
            Self::Data(steps) => {
                let value = steps
                    .iter()
                    .try_fold(subject.data()?, |value, step| match step {
                        Step::Key(key) => value.as_object()?.get(key),
                        Step::Index(index) => value.as_array()?.get(*index),
                    })?;
                Some(match value {
                    Value::String(text) => Found::String(text),
                    other => Found::Json(other),
                })
            }
        }
    }
}

/// How a field's value compares with a literal of the same type; `None` for unlike types.
fn order(found: &Found<'_>, literal: &Literal) -> Option<Ordering> {
    match (found, literal) {
        (Found::String(text), Literal::String(other)) => Some((*text).cmp(other.as_str())),
        (Found::Time(time), Literal::Time(other)) => Some(time.cmp(other)),
        (Found::Json(Value::Number(n)), Literal::Number(other)) => compare_numbers(n, other),
        (Found::Json(Value::Bool(b)), Literal::Bool(other)) => Some(b.cmp(other)),
        (Found::Json(Value::Null), Literal::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// Integers compare exactly (ids beyond 2^53 stay distinct); anything with a fraction or
/// an exponent compares as f64, so `1 == 1.0`.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let exact = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (exact(a), exact(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

impl CompareOp {
    fn admits(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => ordering.is_eq(),
            Self::Ne => ordering.is_ne(),
            Self::Lt => ordering.is_lt(),
            Self::Le => ordering.is_le(),
            Self::Gt => ordering.is_gt(),
            Self::Ge => ordering.is_ge(),
        }
    }

    fn orders(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    String(String),
    Number(Number),
    Compare(CompareOp),
    Dot,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Self::Name(name) => format!("`{name}`"),
            Self::String(text) => format!("{text:?}"),
            Self::Number(n) => n.to_string(),
            Self::Compare(op) => format!("'{op}'"),
            Self::Dot => "'.'".to_owned(),
            Self::Comma => "','".to_owned(),
            Self::OpenParen => "'('".to_owned(),
            Self::CloseParen => "')'".to_owned(),
            Self::OpenBracket => "'['".to_owned(),
            Self::CloseBracket => "']'".to_owned(),
            Self::End => "the end of the filter".to_owned(),
        }
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self, Self::Name(n) if n == name)
    }
}

/// 1-based character column of byte offset `at`.
fn column(text: &str, at: usize) -> usize {
    text[..at].chars().count() + 1
}

fn lex(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let invalid = |at: usize, message: String| FilterError::Invalid {
        message,
        position: column(text, at),
    };
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let mut followed_by = |next: char| chars.next_if(|&(_, c)| c == next).is_some();
        let token = match c {
            c if c.is_whitespace() => continue,
            '.' => Token::Dot,
            ',' => Token::Comma,
            '(' => Token::OpenParen,
            ')' => Token::CloseParen,
            '[' => Token::OpenBracket,
            ']' => Token::CloseBracket,
            '=' if followed_by('=') => Token::Compare(CompareOp::Eq),
            '!' if followed_by('=') => Token::Compare(CompareOp::Ne),
            '<' if followed_by('=') => Token::Compare(CompareOp::Le),
            '>' if followed_by('=') => Token::Compare(CompareOp::Ge),
            '<' => Token::Compare(CompareOp::Lt),
            '>' => Token::Compare(CompareOp::Gt),
            // Words, not symbols: a YAML value starting with '!' is a tag.
            '=' => {
                return Err(invalid(
                    at,
                    "'=' is not an operator; compare with '=='".into(),
                ));
            }
            '!' => return Err(invalid(at, "'!' is not an operator; write `not`".into())),
            '&' => return Err(invalid(at, "'&' is not an operator; write `and`".into())),
            '|' => return Err(invalid(at, "'|' is not an operator; write `or`".into())),
            '"' | '\'' => {
                let mut value = String::new();
                loop {
                    let Some((_, next)) = chars.next() else {
                        return Err(invalid(at, "this string is never closed".into()));
                    };
                    match next {
                        q if q == c => break,
                        '\\' => value.push(unescape(&mut chars).map_err(|m| invalid(at, m))?),
                        other => value.push(other),
                    }
                }
                Token::String(value)
            }
            '-' | '0'..='9' => {
                let mut end = at + 1;
                let mut previous = c;
                while let Some((i, next)) = chars.next_if(|&(_, n)| {
                    n.is_ascii_digit()
                        || matches!(n, '.' | 'e' | 'E')
                        || (matches!(n, '+' | '-') && matches!(previous, 'e' | 'E'))
                }) {
                    end = i + next.len_utf8();
                    previous = next;
                }
                let literal = &text[at..end];
                let number = Number::from_str(literal)
                    .map_err(|_| invalid(at, format!("{literal:?} is not a number")))?;
                Token::Number(number)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = at + 1;
                while let Some((i, _)) =
                    chars.next_if(|&(_, n)| n.is_ascii_alphanumeric() || matches!(n, '_' | '-'))
                {
                    end = i + 1;
                }
                Token::Name(text[at..end].to_owned())
            }
            other => return Err(invalid(at, format!("unexpected character {other:?}"))),
        };
        tokens.push((token, at));
    }
    tokens.push((Token::End, text.len()));
    Ok(tokens)
}

/// The character an escape after a backslash stands for (JSON's escapes, and `\'`).
fn unescape(chars: &mut impl Iterator<Item = (usize, char)>) -> Result<char, String> {
    let (_, c) = chars.next().ok_or("a string ends in a lone '\\'")?;
    Ok(match c {
        '"' | '\'' | '\\' | '/' => c,
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'u' => {
            let hex: String = chars.take(4).map(|(_, c)| c).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .filter(|_| hex.len() == 4)
                .and_then(char::from_u32)
                .ok_or_else(|| {
                    format!("\\u{hex} is not a character; write non-ASCII characters as they are")
                })?
        }
        other => return Err(format!("unknown escape '\\{other}'")),
    })
}

struct Parser<'s> {
    text: &'s str,
    tokens: Vec<(Token, usize)>,
    next: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> (&Token, usize) {
        let (token, at) = &self.tokens[self.next.min(self.tokens.len() - 1)];
        (token, *at)
    }

    fn advance(&mut self) -> (Token, usize) {
        let (token, at) = self.peek();
        let taken = (token.clone(), at);
        self.next += 1;
        taken
    }

    fn invalid(&self, at: usize, message: String) -> FilterError {
        FilterError::Invalid {
            message,
            position: column(self.text, at),
        }
    }

    fn expect(&mut self, wanted: &Token, what: &str) -> Result<(), FilterError> {
        let (token, at) = self.advance();
        if token == *wanted {
            Ok(())
        } else {
            let found = token.describe();
            Err(self.invalid(at, format!("expected {what}, found {found}")))
        }
    }

    fn eat_name(&mut self, name: &str) -> bool {
        let eaten = self.peek().0.is_name(name);
        if eaten {
            self.next += 1;
        }
        eaten
    }

    fn any(&mut self) -> Result<Node, FilterError> {
        let mut terms = vec![self.all()?];
        while self.eat_name("or") {
            terms.push(self.all()?);
        }
        Ok(one_or(terms, Node::Any))
    }

    fn all(&mut self) -> Result<Node, FilterError> {
        let mut terms = vec![self.unary()?];
        while self.eat_name("and") {
            terms.push(self.unary()?);
        }
        Ok(one_or(terms, Node::All))
    }

    fn unary(&mut self) -> Result<Node, FilterError> {
        let (token, at) = self.peek();
        match token {
            Token::Name(name) if name == "not" => {
                self.next += 1;
                self.nested(at, |p| Ok(Node::Not(Box::new(p.unary()?))))
            }
            Token::OpenParen => {
                self.next += 1;
                let node = self.nested(at, Self::any)?;
                self.expect(&Token::CloseParen, "')'")?;
                Ok(node)
            }
            Token::Name(name) if name == "exists" => {
                self.next += 1;
                self.expect(&Token::OpenParen, "'(' after `exists`")?;
                let (path, _) = self.path()?;
                self.expect(&Token::CloseParen, "')' after the field of `exists`")?;
                Ok(Node::Exists(path))
            }
            Token::Name(_) => self.condition(),
            other => {
                let found = other.describe();
                Err(self.invalid(
                    at,
                    format!(
                        "expected a condition (a field, `not`, `exists(...)` or '('), found {found}"
                    ),
                ))
            }
        }
    }

    fn nested(
        &mut self,
        at: usize,
        parse: impl FnOnce(&mut Self) -> Result<Node, FilterError>,
    ) -> Result<Node, FilterError> {
        if self.depth == MAX_DEPTH {
            return Err(FilterError::TooDeep {
                position: column(self.text, at),
            });
        }
        self.depth += 1;
        let node = parse(self);
        self.depth -= 1;
        node
    }

    /// `path op literal` or `path in [literal, ...]`.
    fn condition(&mut self) -> Result<Node, FilterError> {
        let (path, written) = self.path()?;
        let (token, at) = self.advance();
        match token {
            Token::Compare(op) => {
                let value = self.literal(&path, &written, op)?;
                Ok(Node::Compare { path, op, value })
            }
            Token::Name(name) if name == "in" => {
                self.expect(&Token::OpenBracket, "'[' after `in`")?;
                let mut values = vec![self.literal(&path, &written, CompareOp::Eq)?];
                while self.peek().0 == &Token::Comma {
                    self.next += 1;
                    if self.peek().0 == &Token::CloseBracket {
                        break; // a trailing comma
                    }
                    values.push(self.literal(&path, &written, CompareOp::Eq)?);
                }
                self.expect(&Token::CloseBracket, "',' or ']'")?;
                Ok(Node::In { path, values })
            }
            other => {
                let found = other.describe();
                Err(self.invalid(
                    at,
                    format!(
                        "expected '==', '!=', '<', '<=', '>', '>=' or `in` after `{written}`, found {found}"
                    ),
                ))
            }
        }
    }

    /// A field: a root name and, under `labels` and `data`, `.name` and `[...]` steps.
    /// Returns it with the text it was written as, for messages.
    fn path(&mut self) -> Result<(Path, String), FilterError> {
        let (token, start) = self.advance();
        let Token::Name(root) = token else {
            let found = token.describe();
            return Err(self.invalid(start, format!("expected a field ({ROOTS}), found {found}")));
        };
        let mut steps = Vec::new();
        while let Some(step) = self.step()? {
            steps.push(step);
        }
        let written = self.text[start..self.peek().1].trim_end().to_owned();
        self.root(&root, steps, start).map(|path| (path, written))
    }

    /// A `.name`, `["name"]` or `[index]` step, if one follows.
    fn step(&mut self) -> Result<Option<Step>, FilterError> {
        let bracket = match self.peek().0 {
            Token::Dot => false,
            Token::OpenBracket => true,
            _ => return Ok(None),
        };
        self.next += 1;
        let (token, at) = self.advance();
        let step = match (token, bracket) {
            (Token::Name(key), false) | (Token::String(key), true) => Step::Key(key),
            (Token::Number(n), true) => match n.as_u64().and_then(|i| usize::try_from(i).ok()) {
                Some(index) => Step::Index(index),
                None => {
                    let message = format!("{n} is not an array index (0, 1, 2, ...)");
                    return Err(self.invalid(at, message));
                }
            },
            (Token::Number(n), false) => {
                let message =
                    format!("a field name cannot be a number; write [{n}] for an element");
                return Err(self.invalid(at, message));
            }
            (other, false) => {
                let message = format!(
                    "expected a field name after '.', found {}",
                    other.describe()
                );
                return Err(self.invalid(at, message));
            }
            (other, true) => {
                let found = other.describe();
                let message =
                    format!("expected a quoted name or an index after '[', found {found}");
                return Err(self.invalid(at, message));
            }
        };
        if bracket {
            self.expect(&Token::CloseBracket, "']'")?;
        }
        Ok(Some(step))
    }

    fn root(&self, root: &str, steps: Vec<Step>, at: usize) -> Result<Path, FilterError> {
        let scalar = |path: Path| {
            if steps.is_empty() {
                Ok(path)
            } else {
                Err(self.invalid(at, format!("`{root}` has no fields")))
            }
        };
        match root {
            "id" => scalar(Path::Id),
            "type" => scalar(Path::Type),
            "source" => scalar(Path::Source),
            "time" => scalar(Path::Time),
            "data" => Ok(Path::Data(steps)),
            "labels" => match <[Step; 1]>::try_from(steps) {
                Ok([Step::Key(key)]) => Ok(Path::Label(key)),
                Ok([Step::Index(_)]) => {
                    Err(self.invalid(at, "labels have names, not numbers".to_owned()))
                }
                Err(steps) if steps.is_empty() => Err(self.invalid(
                    at,
                    "name one label: labels.NAME or labels[\"NAME\"]".to_owned(),
                )),
                Err(_) => Err(self.invalid(at, "a label is a string and has no fields".to_owned())),
            },
            other => Err(self.invalid(
                at,
                format!("unknown field `{other}`: a filter sees {ROOTS}"),
            )),
        }
    }

    /// A literal that `written` (parsed as `path`) can be compared with by `op`.
    fn literal(
        &mut self,
        path: &Path,
        written: &str,
        op: CompareOp,
    ) -> Result<Literal, FilterError> {
        let (token, at) = self.advance();
        let literal = match token {
            Token::String(text) => Literal::String(text),
            Token::Number(n) => Literal::Number(n),
            Token::Name(name) if name == "true" => Literal::Bool(true),
            Token::Name(name) if name == "false" => Literal::Bool(false),
            Token::Name(name) if name == "null" => Literal::Null,
            other => {
                let found = other.describe();
                let message = format!(
                    "expected a value (a quoted string, a number, true, false or null) \
                     to compare `{written}` with, found {found}"
                );
                return Err(self.invalid(at, message));
            }
        };
        let refused = match (path, literal) {
            (Path::Time, Literal::String(text)) => match OffsetDateTime::parse(&text, &Rfc3339) {
                Ok(time) => return Ok(Literal::Time(time)),
                Err(_) => format!("{text:?} is not an RFC 3339 time such as {EXAMPLE_TIME}"),
            },
            (Path::Time, _) => {
                format!("`time` compares with a quoted RFC 3339 time such as {EXAMPLE_TIME}")
            }
            (Path::Data(_), literal @ (Literal::Number(_) | Literal::String(_))) => {
                return Ok(literal);
            }
            (Path::Data(_), literal) if !op.orders() => return Ok(literal),
            (Path::Data(_), _) => format!("'{op}' orders numbers and strings only"),
            // `id`, `type`, `source` and labels: strings, ordered or not.
            (_, literal @ Literal::String(_)) => return Ok(literal),
            (_, _) => format!("`{written}` is a string; compare it with a quoted string"),
        };
        Err(self.invalid(at, refused))
    }
}

fn one_or(mut terms: Vec<Node>, many: fn(Vec<Node>) -> Node) -> Node {
    if terms.len() == 1 {
        terms.pop().expect("one term, checked just above")
    } else {
        many(terms)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::event;

    fn sample() -> Event {
        let body = json!({
            "id": "evt-1", "type": "deployment.failed", "source": "ci",
            "time": "2026-01-02T03:04:05+01:00",
            "labels": {"env": "prod", "test-type": "e2e", "app.kubernetes.io/name": "shop"},
            "data": {"status": "failed", "duration_ms": 1500, "ratio": 0.25, "big": 9_007_199_254_740_993_u64,
                     "ok": false, "none": null, "commit": {"branch": "main", "sha": "abc"},
                     "tags": ["a", "b"], "items": [{"name": "x"}], "it's": "quoted"}});
        event::decode(body.to_string().as_bytes()).unwrap().event
    }

    fn eval(filter: &str, event: &Event) -> Option<bool> {
        let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        parsed.evaluate(&Subject::new(event))
    }

    fn error(filter: &str) -> String {
        Filter::parse(filter).unwrap_err().to_string()
    }

    #[test]
    fn each_operator_compares_a_field_with_a_literal() {
        let event = sample();
        let cases = [
            (r#"data.status == "failed""#, true),
            (r#"data.status == 'failed'"#, true),
            (r#"data.status != "failed""#, false),
            (r#"data.status != "passed""#, true),
            ("data.duration_ms > 1000", true),
            ("data.duration_ms >= 1500", true),
            ("data.duration_ms < 1500", false),
            ("data.duration_ms <= 1500.0", true),
            ("data.ratio < 0.5", true),
            ("data.ratio > 2.5e-1", false),
            ("data.duration_ms == 1.5e3", true),
            (r#"data.status > "a""#, true),
            (r#"data.status < "failed""#, false),
            ("data.ok == false", true),
            ("data.ok != true", true),
            ("data.none == null", true),
            ("data.commit == null", false),
            (r#"data.commit.branch in ["main", "release"]"#, true),
            (r#"data.commit.branch in ["develop",]"#, false),
            ("data.duration_ms in [1, 1500]", true),
            (r#"data.tags[1] == "b""#, true),
            (r#"data.items[0].name == "x""#, true),
            (r#"data["it's"] == "quoted""#, true),
            (r#"data['it\'s'] == "quoted""#, true),
            ("exists(data.commit.sha)", true),
            ("exists(data.none)", true),
            ("exists(data.commit.tag)", false),
            ("exists(data.tags[2])", false),
            ("exists(data.status.length)", false),
            (r#"not data.status == "failed""#, false),
            (r#"data.ok == false and data.duration_ms > 1000"#, true),
            (r#"data.ok == true and data.duration_ms > 1000"#, false),
            (r#"data.ok == true or data.duration_ms > 1000"#, true),
            (r#"data.ok == true or data.duration_ms > 2000"#, false),
            // `and` binds tighter than `or`; parentheses regroup.
            (
                r#"data.ok == true and data.ok == true or data.ok == false"#,
                true,
            ),
            (
                r#"data.ok == true and (data.ok == true or data.ok == false)"#,
                false,
            ),
            (r#"not not (data.ok == false)"#, true),
        ];
        for (filter, expected) in cases {
            assert_eq!(eval(filter, &event), Some(expected), "{filter}");
        }
    }

    #[test]
    fn the_attributes_are_named_as_in_the_envelope() {
        let event = sample();
        let cases = [
            (r#"id == "evt-1""#, true),
            (r#"type == "deployment.failed""#, true),
            (r#"type in ["deployment.failed", "build.done"]"#, true),
            (r#"source == "ci""#, true),
            (r#"labels.env == "prod""#, true),
            (r#"labels.test-type == "e2e""#, true),
            (r#"labels["app.kubernetes.io/name"] == "shop""#, true),
            ("exists(labels.team)", false),
            ("exists(source)", true),
            // The same instant written with another offset.
            (r#"time == "2026-01-02T02:04:05Z""#, true),
            (r#"time >= "2026-01-02T03:00:00+01:00""#, true),
            (r#"time < "2026-01-01T00:00:00Z""#, false),
        ];
        for (filter, expected) in cases {
            assert_eq!(eval(filter, &event), Some(expected), "{filter}");
        }
    }

    #[test]
    fn integers_compare_exactly_beyond_f64_precision() {
        let event = sample();
        assert_eq!(eval("data.big == 9007199254740993", &event), Some(true));
        assert_eq!(eval("data.big > 9007199254740992", &event), Some(true));
        assert_eq!(eval("data.duration_ms > -1", &event), Some(true));
    }

    #[test]
    fn a_missing_field_or_an_unlike_ordering_is_unknown_and_does_not_match() {
        let event = sample();
        let unknown = [
            r#"data.branch == "main""#,
            r#"data.branch != "main""#,
            r#"data.branch in ["main"]"#,
            "data.status > 5",
            "data.commit < 5",
            r#"labels.team == "a""#,
            r#"not labels.team == "a""#,
            r#"data.ok == false and labels.team == "a""#,
            r#"data.ok == true or labels.team == "a""#,
        ];
        for filter in unknown {
            assert_eq!(eval(filter, &event), None, "{filter}");
        }
        // Unlike types are simply unequal.
        assert_eq!(eval(r#"data.duration_ms == "1500""#, &event), Some(false));
        assert_eq!(eval(r#"data.duration_ms != "1500""#, &event), Some(true));
        // A side that decides wins over an unknown one, in either order.
        assert_eq!(
            eval(r#"labels.team == "a" or data.ok == false"#, &event),
            Some(true)
        );
        assert_eq!(
            eval(r#"labels.team == "a" and data.ok == true"#, &event),
            Some(false)
        );
        // `exists` is the guard: it is never unknown.
        assert_eq!(
            eval(r#"not exists(labels.team) or labels.team == "a""#, &event),
            Some(true)
        );

        let bare = event::decode(br#"{"type": "a"}"#).unwrap().event;
        assert_eq!(eval("data == null", &bare), None);
        assert_eq!(eval("exists(data)", &bare), Some(false));
        assert_eq!(eval(r#"source == "ci""#, &bare), None);
    }

    #[test]
    fn data_is_parsed_only_when_a_filter_reads_it_and_then_once() {
        let event = sample();
        let subject = Subject::new(&event);
        let labels = Filter::parse(r#"labels.env == "prod" or type == "x""#).unwrap();
        assert_eq!(labels.evaluate(&subject), Some(true));
        assert!(subject.data.get().is_none(), "no filter read data yet");
        let data = Filter::parse(r#"data.status == "failed""#).unwrap();
        assert_eq!(data.evaluate(&subject), Some(true));
        let parsed: *const Value = subject.data().unwrap();
        assert_eq!(data.evaluate(&subject), Some(true));
        assert_eq!(
            parsed,
            subject.data().unwrap() as *const Value,
            "parsed once"
        );
    }

    #[test]
    fn length_and_nesting_are_bounded() {
        let (term, last) = (r#"data.status == "x" or "#, "data.ok == false");
        let mut long = term.repeat((MAX_LEN - last.len()) / term.len());
        long.push_str(last);
        long.push_str(&" ".repeat(MAX_LEN - long.len()));
        assert_eq!(eval(&long, &sample()), Some(true));
        long.push(' ');
        assert_eq!(
            Filter::parse(&long),
            Err(FilterError::TooLong { len: MAX_LEN + 1 })
        );

        let nest =
            |depth: usize| format!("{}data.ok == true{}", "(".repeat(depth), ")".repeat(depth));
        Filter::parse(&nest(MAX_DEPTH)).unwrap();
        assert_eq!(
            Filter::parse(&nest(MAX_DEPTH + 1)),
            Err(FilterError::TooDeep {
                position: MAX_DEPTH + 1
            })
        );
        let nots = |depth: usize| format!("{}data.ok == false", "not ".repeat(depth));
        assert_eq!(eval(&nots(MAX_DEPTH), &sample()), Some(true));
        assert!(matches!(
            Filter::parse(&nots(MAX_DEPTH + 1)),
            Err(FilterError::TooDeep { .. })
        ));
        assert_eq!(
            error(&nest(MAX_DEPTH + 1)),
            format!("nests parentheses and `not` deeper than {MAX_DEPTH} levels at position 33")
        );
    }

    #[test]
    fn errors_say_what_is_wrong_and_where() {
        let cases = [
            (
                "",
                "expected a condition (a field, `not`, `exists(...)` or '('), found the end of the filter at position 1",
            ),
            (
                "status == 1",
                "unknown field `status`: a filter sees id, type, source, time, labels and data at position 1",
            ),
            (
                "data.x = 1",
                "'=' is not an operator; compare with '==' at position 8",
            ),
            (
                "data.x == 1 && id == \"a\"",
                "'&' is not an operator; write `and` at position 13",
            ),
            (
                "data.x == 1 || id == \"a\"",
                "'|' is not an operator; write `or` at position 13",
            ),
            (
                "!exists(data.x)",
                "'!' is not an operator; write `not` at position 1",
            ),
            (
                "data.x == \"open",
                "this string is never closed at position 11",
            ),
            (r#"data.x == "\q""#, "unknown escape '\\q' at position 11"),
            ("data.x == 01", "\"01\" is not a number at position 11"),
            (
                "data.x == 1 data.y == 2",
                "expected `and`, `or` or the end of the filter, found `data` at position 13",
            ),
            (
                "data.x ==",
                "expected a value (a quoted string, a number, true, false or null) to compare `data.x` with, found the end of the filter at position 10",
            ),
            (
                "data.x == yes",
                "expected a value (a quoted string, a number, true, false or null) to compare `data.x` with, found `yes` at position 11",
            ),
            (
                "data.x",
                "expected '==', '!=', '<', '<=', '>', '>=' or `in` after `data.x`, found the end of the filter at position 7",
            ),
            (
                "data.x in []",
                "expected a value (a quoted string, a number, true, false or null) to compare `data.x` with, found ']' at position 12",
            ),
            (
                "data.x in [1 2]",
                "expected ',' or ']', found 2 at position 14",
            ),
            (
                "data.x in 1",
                "expected '[' after `in`, found 1 at position 11",
            ),
            (
                "data.x < true",
                "'<' orders numbers and strings only at position 10",
            ),
            (
                "data.x >= null",
                "'>=' orders numbers and strings only at position 11",
            ),
            (
                "data.0 == 1",
                "a field name cannot be a number; write [0] for an element at position 6",
            ),
            (
                "data[-1] == 1",
                "-1 is not an array index (0, 1, 2, ...) at position 6",
            ),
            (
                "data[x] == 1",
                "expected a quoted name or an index after '[', found `x` at position 6",
            ),
            (
                "type == 5",
                "`type` is a string; compare it with a quoted string at position 9",
            ),
            (
                "labels.env in [\"a\", 1]",
                "`labels.env` is a string; compare it with a quoted string at position 21",
            ),
            (
                "time > 5",
                "`time` compares with a quoted RFC 3339 time such as \"2026-01-02T03:04:05Z\" at position 8",
            ),
            (
                "time > \"yesterday\"",
                "\"yesterday\" is not an RFC 3339 time such as \"2026-01-02T03:04:05Z\" at position 8",
            ),
            ("type.name == \"a\"", "`type` has no fields at position 1"),
            (
                "labels == \"a\"",
                "name one label: labels.NAME or labels[\"NAME\"] at position 1",
            ),
            (
                "labels.a.b == \"a\"",
                "a label is a string and has no fields at position 1",
            ),
            (
                "labels[0] == \"a\"",
                "labels have names, not numbers at position 1",
            ),
            (
                "exists data.x",
                "expected '(' after `exists`, found `data` at position 8",
            ),
            (
                "(data.x == 1",
                "expected ')', found the end of the filter at position 13",
            ),
            (
                "data.x == 1 and",
                "expected a condition (a field, `not`, `exists(...)` or '('), found the end of the filter at position 16",
            ),
            ("data.x == 1 ; 1", "unexpected character ';' at position 13"),
            ("é == 1", "unexpected character 'é' at position 1"),
            ("data.é == 1", "unexpected character 'é' at position 6"),
        ];
        for (filter, message) in cases {
            assert_eq!(error(filter), message, "{filter}");
        }
    }

    /// Filters built from these atoms cover every node kind, known and unknown outcomes.
    const ATOMS: [&str; 8] = [
        r#"data.status == "failed""#,
        "data.duration_ms > 2000",
        "data.missing == 1",
        r#"data.status < 3"#,
        "exists(data.commit)",
        r#"labels.env in ["dev", "prod"]"#,
        r#"time < "2020-01-01T00:00:00Z""#,
        "data.ok != false",
    ];

    fn filters() -> impl Strategy<Value = String> {
        let atom = prop::sample::select(ATOMS.to_vec()).prop_map(str::to_owned);
        atom.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| format!("not ({f})")),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|fs| fs.join(" and ")),
                prop::collection::vec(inner, 2..4).prop_map(|fs| format!("({})", fs.join(" or "))),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,64}") {
            let _ = Filter::parse(&text);
        }

        #[test]
        fn parsing_never_panics_on_near_filters(text in r#"[a-z.\[\]()"' 0-9=!<>,-]{0,48}"#) {
            if let Ok(filter) = Filter::parse(&text) {
                let _ = filter.evaluate(&Subject::new(&sample()));
            }
        }

        /// `not`, `and` and `or` follow Kleene's three-valued logic over their terms.
        #[test]
        fn combinations_follow_three_valued_logic(a in filters(), b in filters()) {
            let event = sample();
            let (x, y) = (eval(&a, &event), eval(&b, &event));
            prop_assert_eq!(eval(&format!("not ({a})"), &event), x.map(|v| !v));
            let and = match (x, y) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            prop_assert_eq!(eval(&format!("({a}) and ({b})"), &event), and);
            let or = match (x, y) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
            prop_assert_eq!(eval(&format!("({a}) or ({b})"), &event), or);
        }
    }
}
