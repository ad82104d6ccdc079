//! Subscription templates (MiniJinja): the `template` body, and header values
//! and URLs that contain `{{ }}`. Compiled once per snapshot, rendered per
//! attempt in a sandbox: no loader (no includes, no file or network access),
//! strict undefined variables, a fuel limit for runaway loops and a cap on the
//! output. Context: `event`, `subscription` (`name`, `description`),
//! `attempt`, the function `credential('NAME')` and the filter `tojson`.

use std::{
    fmt::Write as _,
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value, context, value::Serde};

use super::{
    credentials::{CredentialError, Credentials},
    model::Subscription,
};
use crate::{event::Event, field_error::FieldError};

/// Instructions one render may run: plenty for any real payload, a wall for `{% for %}` bombs.
pub const FUEL: u64 = 200_000;
/// Largest rendered body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest rendered URL or header value.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Wall-clock bound of one render, checked as output and filter results grow.
pub const MAX_RENDER_TIME: Duration = Duration::from_millis(500);

/// Why a template could not produce its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A bug in the template: the delivery is dead-lettered with reason `render_error`.
    #[error("render_error: {0}")]
    Template(String),
    /// `credential('NAME')` failed; what that means for the delivery depends on
    /// why (see `CredentialError`).
    #[error(transparent)]
    Credential(CredentialError),
}

/// True when `text` holds template syntax (and so must be rendered).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The compiled templates of one subscription.
pub struct Templates {
    env: Environment<'static>,
    body: bool,
    url: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("body", &self.body)
            .field("url", &self.url)
            .finish()
    }
}

const BODY: &str = "body";
const URL: &str = "url";

fn header_key(name: &str) -> String {
    format!("header:{name}")
}

/// Checks that every template of `sub` parses; the error names the field.
pub fn check(sub: &Subscription) -> Result<(), FieldError> {
    Templates::compile(sub, None).map(drop)
}

impl Templates {
    /// `None` when nothing is templated: the fast path never touches MiniJinja.
    /// Without `credentials` (validation only) `credential()` is not registered.
    pub fn compile(
        sub: &Subscription,
        credentials: Option<Arc<Credentials>>,
    ) -> Result<Option<Self>, FieldError> {
        let body = sub.template.is_some();
        let url = is_template(&sub.url);
        let headers: Vec<_> = sub.headers.iter().filter(|(_, v)| is_template(v)).collect();
        if !body && !url && headers.is_empty() {
            return Ok(None);
        }
        let mut env = sandbox(credentials);
        let mut add = |key: String, source: &str, field: String| {
            if has_operator_star(source) {
                return Err(FieldError::new(
                    field,
                    "the * operator is not allowed in templates (repetition can exhaust memory)",
                ));
            }
            env.add_template_owned(key, source.to_owned())
                .map_err(|err| FieldError::new(field, format!("template does not parse: {err}")))
        };
        if let Some(template) = &sub.template {
            add(BODY.into(), template, "template".into())?;
        }
        if url {
            add(URL.into(), &sub.url, "url".into())?;
        }
        for (name, value) in headers {
            add(header_key(name), value, format!("headers.{name}"))?;
        }
        Ok(Some(Self { env, body, url }))
    }

    pub fn has_body(&self) -> bool {
        self.body
    }

    pub fn body(&self, ctx: &Context) -> Result<String, RenderError> {
        self.render(BODY, ctx, MAX_BODY_BYTES)
    }

    /// The rendered URL, or `None` when the URL is not a template.
    pub fn url(&self, ctx: &Context) -> Result<Option<String>, RenderError> {
        if !self.url {
            return Ok(None);
        }
        self.render(URL, ctx, MAX_LINE_BYTES).map(Some)
    }

    /// The rendered value of header `name`, or `None` when it is not a template.
    pub fn header(&self, name: &str, ctx: &Context) -> Result<Option<String>, RenderError> {
        let key = header_key(name);
        if self.env.get_template(&key).is_err() {
            return Ok(None);
        }
        self.render(&key, ctx, MAX_LINE_BYTES).map(Some)
    }

    fn render(&self, key: &str, ctx: &Context, max: usize) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(key)
            .map_err(|err| RenderError::Template(err.to_string()))?;
        // Written through a bound: a render that grows past `max` stops there.
        let mut out = Bounded::new(max);
        template
            .render_captured_to(&ctx.0, &mut out)
            .map_err(classify)?;
        Ok(out.text)
    }
}

/// An environment with no loader, strict undefined values, fuel, a recursion
/// limit, bounded replacements of the builtins that build one string from a
/// lazily repeated value, and `credential()` when `credentials` are given.
fn sandbox(credentials: Option<Arc<Credentials>>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    // Fuel is charged per instruction, not per byte: `(['x' * 2000000] * 1000) | join`
    // is one instruction that would build 2 GB. These replace the builtins that turn a
    // lazily repeated value into one string, and stop at the body limit instead.
    env.add_filter(
        "join",
        |value: Value, separator: Option<String>| -> Result<String, Error> {
            let mut out = Bounded::new(MAX_BODY_BYTES);
            let separator = separator.unwrap_or_default();
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push(&separator)?;
                }
                out.display(&item)?;
            }
            Ok(out.text)
        },
    );
    env.add_filter("string", |value: Value| -> Result<String, Error> {
        let mut out = Bounded::new(MAX_BODY_BYTES);
        out.display(&value)?;
        Ok(out.text)
    });
    env.add_filter("tojson", |value: Value| -> Result<String, Error> {
        let mut out = Bounded::new(MAX_BODY_BYTES);
        serde_json::to_writer(&mut out, &value)
            .map_err(|err| Error::new(ErrorKind::InvalidOperation, format!("tojson: {err}")))?;
        Ok(out.text)
    });
    if let Some(credentials) = credentials {
        env.add_function("credential", move |name: String| -> Result<String, Error> {
            credentials
                .resolve(&name)
                .map(|secret| secret.expose().to_owned())
                // The error travels as the source, so `classify` finds it by type.
                .map_err(|err| {
                    Error::new(ErrorKind::InvalidOperation, err.to_string()).with_source(err)
                })
        });
    }
    // The two ways to grow a value without bound in few instructions: repetition
    // (`'x' * n`, `[..] * n`) and a namespace doubled in a loop. Neither is needed to
    // shape a webhook payload, so neither is offered.
    env.add_function("namespace", || -> Result<Value, Error> {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "namespace() is not available in herald templates",
        ))
    });
    env
}

/// Text that refuses to grow past `max` bytes or past `MAX_RENDER_TIME`.
struct Bounded {
    text: String,
    max: usize,
    deadline: Instant,
}

impl Bounded {
    fn new(max: usize) -> Self {
        Self {
            text: String::new(),
            max,
            deadline: Instant::now() + MAX_RENDER_TIME,
        }
    }

    fn push(&mut self, s: &str) -> Result<(), Error> {
        if self.text.len() + s.len() > self.max {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("output over {} bytes", self.max),
            ));
        }
        if Instant::now() > self.deadline {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "render took too long",
            ));
        }
        self.text.push_str(s);
        Ok(())
    }

    /// Writes a value's text piece by piece, so a huge value fails early.
    fn display(&mut self, value: &Value) -> Result<(), Error> {
        let mut failed = None;
        let mut sink = FmtSink {
            out: self,
            failed: &mut failed,
        };
        let _ = write!(sink, "{value}");
        failed.map_or(Ok(()), Err)
    }
}

struct FmtSink<'a> {
    out: &'a mut Bounded,
    failed: &'a mut Option<Error>,
}

impl std::fmt::Write for FmtSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.push(s).map_err(|err| {
            *self.failed = Some(err);
            std::fmt::Error
        })
    }
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s =
            std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.push(s).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// True when a `*` (or `**`) appears inside `{{ }}` or `{% %}` outside a string literal.
fn has_operator_star(source: &str) -> bool {
    let bytes = source.as_bytes();
    let (mut in_tag, mut quote, mut i) = (false, None::<u8>, 0);
    while i < bytes.len() {
        let (b, next) = (bytes[i], bytes.get(i + 1).copied());
        match (in_tag, quote) {
            (false, _) if b == b'{' && matches!(next, Some(b'{' | b'%')) => {
                in_tag = true;
                i += 1;
            }
            (true, None) if matches!(b, b'}' | b'%') && next == Some(b'}') => {
                in_tag = false;
                i += 1;
            }
            (true, None) if b == b'\'' || b == b'"' => quote = Some(b),
            (true, Some(_)) if b == b'\\' => i += 1, // an escaped character cannot end the literal
            (true, Some(q)) if b == q => quote = None,
            (true, None) if b == b'*' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// A failed `credential()` keeps its `CredentialError`; anything else is a template bug.
fn classify(err: Error) -> RenderError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = current {
        if let Some(credential) = e.downcast_ref::<CredentialError>() {
            return RenderError::Credential(credential.clone());
        }
        current = e.source();
    }
    match err.kind() {
        ErrorKind::OutOfFuel => {
            RenderError::Template("template ran out of fuel (a loop too long?)".into())
        }
        _ => RenderError::Template(err.to_string()),
    }
}

/// What templates see.
pub struct Context(Value);

impl Context {
    pub fn new(sub: &Subscription, event: &Event, attempt: u32) -> Self {
        // Through serde_json::Value: `data` is raw JSON, which only serde_json can expand.
        let event = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        Self(context! {
            event => Value::from(Serde(event)),
            subscription => context! { name => sub.name.clone(), description => sub.description.clone() },
            attempt => attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::event;

    fn render_body(template: &str) -> Result<String, RenderError> {
        let body = json!({"name": "t", "url": "https://example.com/", "events": ["*"],
                          "format": "template", "content_type": "text/plain", "template": template});
        let sub = Subscription::from_json(&body, None).unwrap();
        let templates = Templates::compile(&sub, Some(Arc::new(Credentials::new("/nonexistent"))))
            .unwrap()
            .unwrap();
        let event = event::decode(br#"{"type":"a.b","data":{"n":[1,2]}}"#)
            .unwrap()
            .event;
        templates.body(&Context::new(&sub, &event, 1))
    }

    #[test]
    fn the_context_and_tojson_render() {
        assert_eq!(
            render_body("{{ event.type }} {{ event.data | tojson }} {{ attempt }}").unwrap(),
            "a.b {\"n\":[1,2]} 1"
        );
        assert_eq!(
            render_body("{{ [1, 2] | join('-') }}|{{ 5 | string }}").unwrap(),
            "1-2|5"
        );
    }

    #[test]
    fn repetition_and_namespaces_are_refused_so_no_value_grows_without_bound() {
        for bomb in [
            "{{ (['x' * 2000000] * 1000) | join }}",
            "{{ ((['x' * 2000000] * 1000) ~ '') | length }}",
            "{{ 'x' ** 3 }}",
        ] {
            assert!(compile_error(bomb).contains("* operator"), "{bomb}");
        }
        assert!(!has_operator_star(
            "{{ '*' }} and \"*\" outside tags: * {{ 'a\\'*' }}"
        ));
        let err = render_body("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}")
            .unwrap_err();
        assert!(matches!(err, RenderError::Template(_)), "{err}");
    }

    #[test]
    fn big_output_stops_at_the_limit_quickly() {
        let started = Instant::now();
        let err =
            render_body("{% for i in range(100000) %}{{ range(100000) | join(',') }}{% endfor %}")
                .unwrap_err();
        assert!(matches!(err, RenderError::Template(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_failed_credential_keeps_its_error_by_type_not_by_text() {
        assert_eq!(
            render_body("{{ credential('NOT_MOUNTED') }}").unwrap_err(),
            RenderError::Credential(CredentialError::Missing("NOT_MOUNTED".into()))
        );
        assert!(matches!(
            render_body("{{ credential('../etc/passwd') }}").unwrap_err(),
            RenderError::Credential(CredentialError::BadName(_))
        ));
    }

    fn compile_error(template: &str) -> String {
        let body = json!({"name": "t", "url": "https://example.com/", "events": ["*"], "format": "template",
                          "content_type": "text/plain", "template": template});
        Subscription::from_json(&body, None).unwrap_err().message
    }
}
