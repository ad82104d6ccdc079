//! Subscription templates (MiniJinja): the `template` body, and header values
//! and URLs that contain `{{ }}`. Compiled once per snapshot, rendered per
//! attempt in a sandbox: no loader (no includes, no file or network access),
//! strict undefined variables, a fuel limit for runaway loops and a cap on the
//! output. Context: `event`, `subscription` (`name`, `description`),
//! `attempt`, the function `credential('NAME')` and the filter `tojson`.

use std::sync::Arc;

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value, context, value::Serde};

use super::credentials::{CredentialError, Credentials};
use crate::{ingest::envelope::Event, subscriptions::model::Subscription};

/// Instructions one render may run: plenty for any real payload, a wall for `{% for %}` bombs.
pub const FUEL: u64 = 200_000;
/// Largest rendered body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest rendered URL or header value.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Why a template could not produce its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Permanent: the delivery is dead-lettered with reason `render_error`.
    #[error("render_error: {0}")]
    Template(String),
    /// Retryable: `credential('NAME')` could not be resolved.
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
pub fn check(sub: &Subscription) -> Result<(), (String, String)> {
    Templates::compile(sub, None).map(drop)
}

impl Templates {
    /// `None` when nothing is templated: the fast path never touches MiniJinja.
    /// Without `credentials` (validation only) `credential()` is not registered.
    pub fn compile(
        sub: &Subscription,
        credentials: Option<Arc<Credentials>>,
    ) -> Result<Option<Self>, (String, String)> {
        let body = sub.template.is_some();
        let url = is_template(&sub.url);
        let headers: Vec<_> = sub.headers.iter().filter(|(_, v)| is_template(v)).collect();
        if !body && !url && headers.is_empty() {
            return Ok(None);
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(32);
        if let Some(credentials) = credentials {
            env.add_function("credential", move |name: String| -> Result<String, Error> {
                credentials
                    .resolve(&name)
                    .map(|secret| secret.expose().to_owned())
                    .map_err(|err| Error::new(ErrorKind::InvalidOperation, err.to_string()))
            });
        }
        let mut add = |key: String, source: &str, field: String| {
            env.add_template_owned(key, source.to_owned())
                .map_err(|err| (field, format!("template does not parse: {err}")))
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
        let text = template.render(&ctx.0).map_err(classify)?;
        if text.len() > max {
            return Err(RenderError::Template(format!(
                "{key} renders to {} bytes, over {max}",
                text.len()
            )));
        }
        Ok(text)
    }
}

/// A missing credential is retryable; anything else is a template bug.
fn classify(err: Error) -> RenderError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = current {
        if let Some(jinja) = e.downcast_ref::<Error>()
            && let Some(name) = jinja
                .detail()
                .and_then(|d| d.strip_prefix("missing_credential: "))
        {
            return RenderError::Credential(CredentialError::Missing(name.to_owned()));
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
