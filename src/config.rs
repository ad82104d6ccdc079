//! herald's configuration: one struct per section of `config/herald.toml`.
//! Layers, later wins: the embedded default file, `--config FILE`, then
//! `HERALD__SECTION__KEY` environment variables. Every error names its key.

use std::{fmt, net::SocketAddr, num::NonZeroU32, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize};

use crate::delivery::{egress::EgressPolicy, retry::RetryPolicy};

/// The documented defaults: `config/herald.toml` is both the file users read and the base layer.
pub const DEFAULTS: &str = include_str!("../config/herald.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub redis: RedisConfig,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    pub delivery: DeliveryConfig,
    pub credentials: CredentialsConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// RabbitMQ URL. `heartbeat` (seconds) bounds how long a dead or hung broker goes unnoticed.
    pub url: SecretUrl,
    /// Prefix of every exchange and queue herald declares.
    pub prefix: String,
    /// `quorum` (replicated, the production choice) or `classic` (a single dev broker).
    pub queue_type: QueueType,
    /// Unacknowledged messages a worker holds per consumer.
    pub prefetch: u16,
    /// A publisher confirm that takes longer is an unknown outcome: the input is requeued.
    #[serde(with = "duration")]
    pub confirm_timeout: Duration,
    /// Deliveries of one message after which a quorum queue moves it to `<prefix>.dead`.
    pub delivery_limit: NonZeroU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL (redis:// or rediss://) of the subscription store.
    pub url: SecretUrl,
    /// Prefix of every Redis key herald uses.
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP API, /metrics and the health routes.
    pub listen: SocketAddr,
    /// Bearer token every /v1/ route requires.
    pub token: SecretString,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Delivery attempts a worker runs at once.
    pub concurrency: NonZeroU32,
    /// On SIGTERM, how long in-flight attempts may take before the rest is returned to the queue.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Total deadline of one attempt; a subscription's `timeout` overrides it.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Attempts per delivery, the first included; a subscription's `max_attempts` overrides it.
    pub max_attempts: NonZeroU32,
    /// Delay before the first retry.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Each further retry waits this many times longer (+-20 % jitter).
    pub retry_multiplier: f64,
    /// No retry waits longer than this.
    #[serde(with = "duration")]
    pub retry_max_delay: Duration,
    /// Bytes of a response body herald reads; the rest is never read.
    pub max_response_bytes: usize,
    /// Attempts in flight for one slow subscription per worker (recent attempts averaging
    /// 250ms or more); further tasks wait in a delay queue. Fast endpoints are not capped.
    pub max_in_flight_per_subscription: NonZeroU32,
    /// Allow loopback, private, link-local, CGNAT and unique-local targets (cloud metadata never).
    pub allow_private_targets: bool,
    /// Networks delivery may reach even when private targets are refused (e.g. ["10.20.0.0/16"]).
    #[serde(deserialize_with = "string_list")]
    pub allowed_cidrs: Vec<String>,
    /// Refuse plain-http subscription URLs.
    pub https_only: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Directory of credential files (`credential('NAME')` reads `<dir>/NAME`), e.g. a
    /// mounted Kubernetes Secret; `HERALD_CREDENTIAL_NAME` in the environment wins.
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest event (AMQP message body, or POST /v1/events request body) herald accepts.
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Add a `subscription` label to delivery metrics.
    pub per_subscription: bool,
    /// How often a worker reads its queues' depths for `herald_queue_messages`.
    #[serde(with = "duration")]
    pub queue_refresh: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, or per module (`herald=debug,lapin=warn`).
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Why the configuration was refused: always one line that names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Config {
    /// The embedded defaults alone: what tests start from before setting fields in code.
    pub fn defaults() -> Self {
        Self::extract(Figment::from(Toml::string(DEFAULTS)))
            .expect("config/herald.toml is valid: a unit test proves it")
    }

    /// Defaults, then `file`, then `HERALD__SECTION__KEY` variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config = Self::extract(figment.merge(Env::prefixed("HERALD__").split("__")))?;
        config.validate()?;
        Ok(config)
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        figment.extract().map_err(|err| {
            // figment collects every error; the first is enough to fix, and stays one line.
            let err = err
                .into_iter()
                .next()
                .expect("a figment error holds at least one");
            let key = err.path.join(".");
            let message = match &err.kind {
                figment::error::Kind::Message(m) => m.clone(),
                kind => kind.to_string(),
            };
            ConfigError {
                key: if key.is_empty() { "config".into() } else { key },
                message,
            }
        })
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_prefix("amqp.prefix", &self.amqp.prefix)?;
        check_prefix("redis.prefix", &self.redis.prefix)?;
        let amqp = self.amqp.url.expose();
        if !(amqp.starts_with("amqp://") || amqp.starts_with("amqps://")) {
            return Err(ConfigError::new(
                "amqp.url",
                "must start with amqp:// or amqps://",
            ));
        }
        let redis = self.redis.url.expose();
        if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(ConfigError::new(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        if self.amqp.prefetch == 0 {
            return Err(ConfigError::new("amqp.prefetch", "must be at least 1"));
        }
        if self.amqp.confirm_timeout.is_zero() {
            return Err(ConfigError::new(
                "amqp.confirm_timeout",
                "must be more than 0",
            ));
        }
        let d = &self.delivery;
        if d.timeout.is_zero() {
            return Err(ConfigError::new("delivery.timeout", "must be more than 0"));
        }
        if d.retry_initial < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "delivery.retry_initial",
                "must be at least 1ms",
            ));
        }
        if !(d.retry_multiplier.is_finite() && d.retry_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "delivery.retry_multiplier",
                format!("must be a number >= 1, not {}", d.retry_multiplier),
            ));
        }
        if d.retry_max_delay < d.retry_initial {
            return Err(ConfigError::new(
                "delivery.retry_max_delay",
                "must be at least delivery.retry_initial",
            ));
        }
        if d.max_response_bytes == 0 {
            return Err(ConfigError::new(
                "delivery.max_response_bytes",
                "must be at least 1",
            ));
        }
        self.egress_policy()?;
        if self.metrics.queue_refresh < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "metrics.queue_refresh",
                "must be at least 100ms",
            ));
        }
        if self.limits.max_event_bytes < 64 {
            return Err(ConfigError::new(
                "limits.max_event_bytes",
                "must be at least 64",
            ));
        }
        Ok(())
    }

    /// Refused only when the API is actually served: a worker-only process needs no token.
    pub fn validate_api(&self) -> Result<(), ConfigError> {
        if self.api.token.expose().is_empty() {
            return Err(ConfigError::new(
                "api.token",
                "must be set to serve the API (for example HERALD__API__TOKEN)",
            ));
        }
        Ok(())
    }

    /// The retry schedule with the delivery defaults; a subscription may override `max_attempts`.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: self.delivery.retry_initial,
            multiplier: self.delivery.retry_multiplier,
            max_delay: self.delivery.retry_max_delay,
            max_attempts: self.delivery.max_attempts.get(),
        }
    }

    /// Where delivery may connect, from `delivery.allow_private_targets`, `allowed_cidrs`, `https_only`.
    pub fn egress_policy(&self) -> Result<EgressPolicy, ConfigError> {
        let d = &self.delivery;
        EgressPolicy::new(d.allow_private_targets, &d.allowed_cidrs, d.https_only).map_err(|err| {
            let text = err.to_string();
            let message = text
                .strip_prefix("delivery.allowed_cidrs: ")
                .unwrap_or(&text);
            ConfigError::new("delivery.allowed_cidrs", message)
        })
    }

    /// The effective configuration as TOML, secrets masked: what `herald check-config` prints.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serializes: every field is plain data")
    }
}

fn check_prefix(key: &str, prefix: &str) -> Result<(), ConfigError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{prefix:?} must be 1-64 of a-z, 0-9, '-', '_', '.'"),
        ))
    }
}

/// A secret (the API token): never printed, in `Debug` or in `check-config`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A URL that may carry a password: shown with the password masked.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `scheme://user:***@host/...`: safe for logs.
    pub fn masked(&self) -> String {
        mask_url_password(&self.0)
    }
}

fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

/// A list given as a TOML array, or as one comma-separated string (handy in an environment variable).
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(list) => list,
    })
}

/// Human durations (`250ms`, `5s`, `1h`) with an error that quotes the value.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)
            .map_err(|_| D::Error::custom("expected a duration string like \"5s\""))?;
        humantime::parse_duration(&text)
            .map_err(|_| D::Error::custom(format!("invalid duration {text:?}")))
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(file: &str) -> Result<Config, ConfigError> {
        let config =
            Config::extract(Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(file)))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn the_documented_defaults_load_and_validate() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert_eq!(config.amqp.prefix, "herald");
        assert_eq!(config.amqp.queue_type, QueueType::Quorum);
        assert_eq!(config.delivery.max_attempts.get(), 13);
        assert_eq!(config.delivery.retry_initial, Duration::from_secs(5));
        assert_eq!(
            config.delivery.retry_max_delay,
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(config.worker.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_bad_duration_names_the_key_and_quotes_the_value() {
        let err = with("[delivery]\ntimeout = \"banana\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "delivery.timeout: invalid duration \"banana\""
        );
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = with("[delivery]\ntimeuot = \"5s\"").unwrap_err();
        assert!(err.to_string().contains("timeuot"), "{err}");
    }

    #[test]
    fn a_bad_enum_value_names_the_key() {
        let err = with("[amqp]\nqueue_type = \"stream\"").unwrap_err();
        assert!(err.to_string().starts_with("amqp.queue_type: "), "{err}");
    }

    #[test]
    fn cross_field_rules_name_the_key() {
        let err = with("[delivery]\nretry_initial = \"1h\"\nretry_max_delay = \"1m\"").unwrap_err();
        assert_eq!(err.key, "delivery.retry_max_delay");
        let err = with("[amqp]\nprefix = \"Bad Prefix\"").unwrap_err();
        assert_eq!(err.key, "amqp.prefix");
    }

    #[test]
    fn allowed_cidrs_take_a_list_or_a_comma_separated_string() {
        let config = with("[delivery]\nallowed_cidrs = \"10.1.0.0/16, 192.168.5.0/24\"").unwrap();
        assert_eq!(
            config.delivery.allowed_cidrs,
            ["10.1.0.0/16", "192.168.5.0/24"]
        );
        let config = with("[delivery]\nallowed_cidrs = [\"10.1.0.0/16\"]").unwrap();
        assert_eq!(config.delivery.allowed_cidrs, ["10.1.0.0/16"]);
        let err = with("[delivery]\nallowed_cidrs = [\"10.1.0.0/33\"]").unwrap_err();
        assert_eq!(err.key, "delivery.allowed_cidrs");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut config = Config::defaults();
        config.api.token = SecretString::new("s3cret-token");
        config.amqp.url = SecretUrl::new("amqp://user:hunter2@broker:5672/%2f");
        let printed = config.to_masked_toml();
        assert!(!printed.contains("s3cret-token"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("amqp://user:***@broker:5672/%2f"),
            "{printed}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn an_empty_token_is_refused_only_for_the_api() {
        let config = Config::defaults();
        assert_eq!(config.validate_api().unwrap_err().key, "api.token");
    }
}
