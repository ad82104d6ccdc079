//! herald's configuration: one struct per section of `config/herald.toml`.
//! Layers, later wins: the embedded default file, `--config FILE`, then
//! `HERALD__SECTION__KEY` environment variables. Every error names its key.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
    pub outcomes: OutcomesConfig,
    pub credentials: CredentialsConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// RabbitMQ URL, or one per node of a cluster. `heartbeat` (seconds) bounds
    /// how long a dead or hung broker goes unnoticed.
    pub url: NodeUrls,
    /// Prefix of every exchange and queue herald declares.
    pub prefix: String,
    /// `quorum` (replicated, the production choice) or `classic` (a single dev broker).
    pub queue_type: QueueType,
    /// Unacknowledged messages a worker holds per consumer.
    pub prefetch: u16,
    /// A publisher confirm that takes longer is an unknown outcome: the input is requeued.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// Deliveries of one message after which a quorum queue moves it to `<prefix>.dead`.
    pub delivery_limit: NonZeroU32,
    /// The `[tls]` section, copied here when the configuration is read, so
    /// whatever connects to the broker needs only this section.
    #[serde(skip)]
    pub tls: TlsConfig,
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
    /// The `[tls]` section, copied here as for [`AmqpConfig::tls`].
    #[serde(skip)]
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP API, /metrics and the health routes.
    pub listen: SocketAddr,
    /// Bearer token every /v1/ route requires.
    pub token: SecretString,
    /// How long `POST /v1/events` remembers an `Idempotency-Key` and its answer.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Delivery attempts a worker runs at once.
    pub concurrency: NonZeroU32,
    /// On SIGTERM, how long in-flight attempts may take before the rest is returned to the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Total deadline of one attempt; a subscription's `timeout` overrides it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per delivery, the first included; a subscription's `max_attempts` overrides it.
    pub max_attempts: NonZeroU32,
    /// Delay before the first retry.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Each further retry waits this many times longer (+-20 % jitter).
    pub retry_multiplier: f64,
    /// No retry waits longer than this.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Bytes of a response body herald reads; the rest is never read.
    pub max_response_bytes: usize,
    /// Attempts in flight for one slow subscription per worker (recent attempts averaging
    /// 250ms or more); further tasks wait in a delay queue. Fast endpoints are not capped.
    pub max_in_flight_per_subscription: NonZeroU32,
    /// Allow loopback, private, link-local, CGNAT and unique-local targets (cloud metadata never).
    pub allow_private_targets: bool,
    /// Networks delivery may reach even when private targets are refused (e.g. ["10.20.0.0/16"]).
    #[serde(deserialize_with = "cidr_list")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Refuse plain-http subscription URLs.
    pub https_only: bool,
    /// A subscription whose attempts have all failed for this long, without a single
    /// success, is disabled (logged, counted, announced as an outcome event). 0 never does.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomesConfig {
    /// Publish one message per attempt outcome to the topic exchange `<prefix>.outcomes`,
    /// best effort: publishing them never blocks or fails a delivery.
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Directory of credential files (`credential('NAME')` reads `<dir>/NAME`), e.g. a
    /// mounted Kubernetes Secret; `HERALD_CREDENTIAL_NAME` in the environment wins.
    pub dir: std::path::PathBuf,
}

/// TLS to RabbitMQ (`amqps://`) and Redis (`rediss://`). Each connection to
/// RabbitMQ reads the files again, so a rotated certificate is used without a
/// restart; Redis reads them when herald starts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of CA certificates trusted besides the system's roots.
    #[serde(
        default,
        deserialize_with = "optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM, with its chain) for mutual TLS; needs `key_file`.
    #[serde(
        default,
        deserialize_with = "optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(
        default,
        deserialize_with = "optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_file: Option<PathBuf>,
}

/// What [`TlsConfig`] names, read and checked.
#[derive(Default)]
pub struct TlsFiles {
    /// PEM CA certificates to trust besides the system's roots.
    pub ca: Option<String>,
    /// PEM client certificate chain and private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsConfig {
    /// Reads the files, checking that each holds what it should.
    pub fn read(&self) -> Result<TlsFiles, ConfigError> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

        let certificates = |key: &str, path: &Path| -> Result<Vec<u8>, ConfigError> {
            let pem = read_file(key, path)?;
            let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            match parsed {
                Ok(certs) if !certs.is_empty() => Ok(pem),
                Ok(_) => Err(ConfigError::new(
                    key,
                    format!("{} holds no PEM certificate", path.display()),
                )),
                Err(e) => Err(ConfigError::new(key, format!("{}: {e}", path.display()))),
            }
        };
        let ca = match &self.ca_file {
            Some(path) => Some(certificates("tls.ca_file", path)?),
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = certificates("tls.cert_file", cert)?;
                let pem = read_file("tls.key_file", key)?;
                PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    ConfigError::new(
                        "tls.key_file",
                        format!("{}: no private key: {e}", key.display()),
                    )
                })?;
                Some((chain, pem))
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "tls.key_file",
                    "must be set with tls.cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "tls.cert_file",
                    "must be set with tls.key_file",
                ));
            }
            (None, None) => None,
        };
        Ok(TlsFiles {
            ca: ca.map(|pem| String::from_utf8_lossy(&pem).into_owned()),
            identity,
        })
    }
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))
}

/// An empty string (the documented default) means not set.
fn optional_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(d)?;
    Ok((!path.as_os_str().is_empty()).then_some(path))
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
    #[serde(with = "humantime_serde")]
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
        let mut config: Self = figment.extract().map_err(|err| {
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
        })?;
        config.amqp.tls = config.tls.clone();
        config.redis.tls = config.tls.clone();
        Ok(config)
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_prefix("amqp.prefix", &self.amqp.prefix)?;
        check_prefix("redis.prefix", &self.redis.prefix)?;
        for url in self.amqp.url.iter() {
            check_scheme("amqp.url", url, &["amqp://", "amqps://"])?;
        }
        check_scheme("redis.url", &self.redis.url, &["redis://", "rediss://"])?;
        self.tls.read()?;
        if self.amqp.prefetch == 0 {
            return Err(ConfigError::new("amqp.prefetch", "must be at least 1"));
        }
        if self.amqp.confirm_timeout.is_zero() {
            return Err(ConfigError::new(
                "amqp.confirm_timeout",
                "must be more than 0",
            ));
        }
        self.delivery.validate()?;
        if self.api.idempotency_window < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "api.idempotency_window",
                "must be at least 1s",
            ));
        }
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

    /// The effective configuration as TOML, secrets masked: what `herald check-config` prints.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serializes: every field is plain data")
    }
}

impl DeliveryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new("delivery.timeout", "must be more than 0"));
        }
        if self.retry_initial < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "delivery.retry_initial",
                "must be at least 1ms",
            ));
        }
        if !(self.retry_multiplier.is_finite() && self.retry_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "delivery.retry_multiplier",
                format!("must be a number >= 1, not {}", self.retry_multiplier),
            ));
        }
        if self.retry_max_delay < self.retry_initial {
            return Err(ConfigError::new(
                "delivery.retry_max_delay",
                "must be at least delivery.retry_initial",
            ));
        }
        if self.max_response_bytes == 0 {
            return Err(ConfigError::new(
                "delivery.max_response_bytes",
                "must be at least 1",
            ));
        }
        // Bits past the prefix make it unclear which network was meant.
        if let Some(cidr) = self.allowed_cidrs.iter().find(|c| c.trunc() != **c) {
            return Err(ConfigError::new(
                "delivery.allowed_cidrs",
                format!(
                    "{:?} has host bits set (the network is {:?})",
                    cidr.to_string(),
                    cidr.trunc().to_string()
                ),
            ));
        }
        Ok(())
    }
}

fn check_scheme(key: &str, url: &SecretUrl, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes.iter().any(|s| url.expose().starts_with(s)) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("must start with {}", schemes.join(" or ")),
        ))
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

/// The RabbitMQ nodes herald may connect to: one URL, or one per node of a
/// cluster (a list, see [`OneOrMany`]; a comma inside a URL must be written
/// `%2C`). Every node serves every queue (quorum queues are replicated), so
/// any node will do: a connection goes to the first that answers, starting
/// from the one after the node last lost. Clones share that starting point.
#[derive(Clone, Deserialize)]
#[serde(try_from = "OneOrMany")]
pub struct NodeUrls {
    urls: Arc<[SecretUrl]>,
    /// Where the next connection starts looking: random at first, so workers
    /// sharing one list spread over the nodes.
    next: Arc<AtomicUsize>,
}

impl NodeUrls {
    pub fn new(url: impl Into<String>) -> Self {
        Self::from_list(vec![SecretUrl::new(url)])
    }

    fn from_list(urls: Vec<SecretUrl>) -> Self {
        let start = fastrand::usize(..urls.len().max(1));
        Self {
            urls: urls.into(),
            next: Arc::new(AtomicUsize::new(start)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &SecretUrl> {
        self.urls.iter()
    }

    /// The nodes in the order to try them now, with their positions.
    pub fn in_turn(&self) -> impl Iterator<Item = (usize, &SecretUrl)> {
        let start = self.next.load(Ordering::Relaxed);
        let n = self.urls.len();
        (0..n)
            .map(move |i| (start + i) % n)
            .map(|i| (i, &self.urls[i]))
    }

    /// Node `index` answered: later connections go there first.
    pub fn connected(&self, index: usize) {
        self.next.store(index, Ordering::Relaxed);
    }

    /// The connection to node `index` failed: later ones start at the next node.
    pub fn lost(&self, index: usize) {
        let _ = self.next.compare_exchange(
            index,
            (index + 1) % self.urls.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl TryFrom<OneOrMany> for NodeUrls {
    type Error = String;

    fn try_from(list: OneOrMany) -> Result<Self, String> {
        let urls = list.items();
        if urls.is_empty() {
            return Err("names no broker".into());
        }
        Ok(Self::from_list(
            urls.into_iter().map(SecretUrl::new).collect(),
        ))
    }
}

impl fmt::Debug for NodeUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.urls.iter()).finish()
    }
}

/// One URL prints as a string, as it was most likely given; several as a list.
impl Serialize for NodeUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &*self.urls {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

/// A list given as a TOML array, or as one comma-separated string (handy in an
/// environment variable); blank entries are skipped.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(self) -> Vec<String> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Self::Many(list) => list,
        }
    }
}

/// CIDRs given as a list (see [`OneOrMany`]). Each is `address/prefix`; the
/// prefix is digits only.
fn cidr_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = OneOrMany::deserialize(d)?.items();
    texts
        .iter()
        .map(|text| {
            // ipnet reads `010.0.0.0` as 10.0.0.0 where other tools read octal 8.0.0.0;
            // std's address parser refuses leading zeros, so an ambiguous entry fails.
            let unambiguous = text
                .split_once('/')
                .is_some_and(|(address, _)| address.parse::<IpAddr>().is_ok());
            text.parse()
                .ok()
                .filter(|_| unambiguous)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a CIDR")))
        })
        .collect()
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
            "delivery.timeout: invalid value string \"banana\", expected a duration"
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
        let cidrs = |config: Config| -> Vec<String> {
            let cidrs = config.delivery.allowed_cidrs.iter();
            cidrs.map(ToString::to_string).collect()
        };
        assert_eq!(cidrs(config), ["10.1.0.0/16", "192.168.5.0/24"]);
        let config = with("[delivery]\nallowed_cidrs = [\"10.1.0.0/16\"]").unwrap();
        assert_eq!(cidrs(config), ["10.1.0.0/16"]);
    }

    #[test]
    fn tls_files_are_checked_at_start_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let not_pem = not_pem.display();
        for (file, key, says) in [
            (
                format!("cert_file = \"{not_pem}\""),
                "tls.key_file",
                "must be set with tls.cert_file",
            ),
            (
                format!("key_file = \"{not_pem}\""),
                "tls.cert_file",
                "must be set with tls.key_file",
            ),
            (
                "ca_file = \"/nonexistent/ca.pem\"".to_owned(),
                "tls.ca_file",
                "/nonexistent/ca.pem: No such file",
            ),
            (
                format!("ca_file = \"{not_pem}\""),
                "tls.ca_file",
                "holds no PEM certificate",
            ),
        ] {
            let err = with(&format!("[tls]\n{file}")).unwrap_err();
            assert_eq!(err.key, key, "{file}");
            assert!(err.message.contains(says), "{file}: {err}");
        }
        let config = with("[tls]\nca_file = \"\"").unwrap();
        assert!(config.tls.ca_file.is_none() && config.amqp.tls.ca_file.is_none());
    }

    #[test]
    fn amqp_url_takes_one_node_or_several() {
        let urls = |config: &Config| -> Vec<String> {
            config
                .amqp
                .url
                .iter()
                .map(|u| u.expose().to_owned())
                .collect()
        };
        let config = with("[amqp]\nurl = \"amqp://a:5672/%2f, amqp://b:5672/%2f\"").unwrap();
        assert_eq!(urls(&config), ["amqp://a:5672/%2f", "amqp://b:5672/%2f"]);
        let config = with("[amqp]\nurl = [\"amqp://a/%2f\", \"amqps://b/%2f\"]").unwrap();
        assert_eq!(urls(&config), ["amqp://a/%2f", "amqps://b/%2f"]);
        let err = with("[amqp]\nurl = [\"amqp://a/%2f\", \"http://b/\"]").unwrap_err();
        assert_eq!(err.key, "amqp.url");
        assert_eq!(with("[amqp]\nurl = \" , \"").unwrap_err().key, "amqp.url");
    }

    #[test]
    fn connections_start_after_the_node_last_lost_and_stay_where_one_answered() {
        let nodes: NodeUrls = OneOrMany::One("amqp://a, amqp://b, amqp://c".into())
            .try_into()
            .unwrap();
        let order = |nodes: &NodeUrls| -> String {
            nodes.in_turn().map(|(_, u)| &u.expose()[7..]).collect()
        };
        nodes.connected(0);
        assert_eq!(order(&nodes), "abc");
        nodes.lost(0);
        assert_eq!(order(&nodes), "bca");
        // A second connection to the lost node failing does not skip a good one.
        nodes.lost(0);
        assert_eq!(order(&nodes), "bca");
        nodes.connected(2);
        assert_eq!(order(&nodes), "cab");
        let clone = nodes.clone();
        clone.lost(2);
        assert_eq!(order(&nodes), "abc", "clones share where to start");
    }

    #[test]
    fn a_malformed_cidr_is_refused_naming_the_key_and_the_value() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "010.0.0.0/8",
            "10.0.0/8",
            " 10.0.0.0/8",
            "fe80::/129",
            "[fe80::]/64",
            "example.com/24",
            "",
        ] {
            let err = with(&format!("[delivery]\nallowed_cidrs = [{bad:?}]")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("delivery.allowed_cidrs: {bad:?} is not a CIDR")
            );
        }
    }

    #[test]
    fn a_cidr_with_host_bits_set_is_refused_naming_the_network() {
        let err = with("[delivery]\nallowed_cidrs = \"10.1.2.3/16\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "delivery.allowed_cidrs: \"10.1.2.3/16\" has host bits set (the network is \"10.1.0.0/16\")"
        );
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut config = Config::defaults();
        config.api.token = SecretString::new("s3cret-token");
        config.amqp.url = NodeUrls::new("amqp://user:hunter2@broker:5672/%2f");
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
