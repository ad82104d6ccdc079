//! The outbound HTTP client: the SSRF guard on every URL and every resolved
//! address, no redirects (a 3xx is a failure), no proxies, one total deadline
//! per attempt (connect to last body byte), and response bodies read up to
//! `delivery.max_response_bytes` and no further.

use std::{
    error::Error as _,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use reqwest::{Client, Method, header::HeaderMap, redirect::Policy};

use super::{
    egress::{EgressPolicy, GuardedResolver, Refusal},
    retry::parse_retry_after,
};

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub struct HttpClient {
    client: Client,
    max_response_bytes: usize,
    policy: Arc<EgressPolicy>,
}

/// What the endpoint answered; `body` holds at most `max_response_bytes`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Why no response came. Timeouts, connection and request failures are
/// retried; a forbidden target is not (see `outcome::classify`).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    /// The target is not allowed: permanent, never retried against the same answer.
    #[error(transparent)]
    Forbidden(#[from] Refusal),
}

pub struct Request {
    pub method: Method,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
}

impl HttpClient {
    pub fn new(max_response_bytes: usize, policy: EgressPolicy) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let client = Client::builder()
            // Every resolved address is judged at connect time: DNS rebinding cannot pass.
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .user_agent(USER_AGENT)
            // A proxy would connect on our behalf and bypass every address check.
            .no_proxy()
            .redirect(Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            max_response_bytes,
            policy,
        })
    }

    /// The guard this client applies, for checks before anything is sent.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let Request {
            method,
            url,
            headers,
            body,
            timeout,
        } = request;
        // reqwest dials IP-literal hosts without asking the resolver.
        self.policy.check_url(&url)?;
        // The deadline covers the body too: a trickling endpoint cannot hold a slot.
        let exchange = async {
            let mut response = self
                .client
                .request(method, url)
                .headers(headers)
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut body = Vec::new();
            while body.len() < self.max_response_bytes {
                let Some(chunk) = response.chunk().await? else {
                    break;
                };
                let room = self.max_response_bytes - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok::<_, reqwest::Error>(Response {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(HttpError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(describe(err)),
        }
    }
}

/// Words for a transport error, without the URL (it may carry credentials).
fn describe(err: reqwest::Error) -> HttpError {
    if let Some(refusal) = Refusal::find(&err) {
        return HttpError::Forbidden(refusal.clone());
    }
    let err = err.without_url();
    if err.is_timeout() {
        return HttpError::Timeout;
    }
    let mut words = Vec::new();
    let mut source = err.source();
    while let Some(s) = source {
        words.push(s.to_string());
        source = s.source();
    }
    let detail = words.last().cloned().unwrap_or_else(|| err.to_string());
    if err.is_connect() {
        HttpError::Connect(detail)
    } else {
        HttpError::Request(detail)
    }
}
