//! `herald sink`: a local receiver for trying herald out and rehearsing the bad
//! day. It prints a line per delivery (or a JSON object with `--json`) with the
//! Standard Webhooks signature verdict when given the subscription's secret,
//! and answers each event with the statuses it is told (`--status 500,500,200`
//! fails an event's first two attempts), after `--delay` when asked.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
};
use clap::Args;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::subscriptions::signature::{SigningSecret, verify};

/// Verifiers reject signatures older (or newer) than this.
const TOLERANCE_SECS: i64 = 5 * 60;
/// Characters of a body shown on a text line.
const SHOWN_BODY_CHARS: usize = 120;
/// Events whose attempts are counted; past it the count starts over, so a
/// long rehearsal does not grow without bound.
const REMEMBERED_EVENTS: usize = 100_000;

#[derive(Debug, Args)]
pub struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// The subscription's signing secret (whsec_...), to verify signatures.
    #[arg(long)]
    pub secret: Option<String>,
    /// Statuses to answer each event with, attempt by attempt; the last one
    /// repeats. `500,500,200` makes every event succeed on its third attempt.
    #[arg(long, value_delimiter = ',', default_value = "200", value_parser = parse_status)]
    pub status: Vec<StatusCode>,
    /// Wait this long before answering (`250ms`, `2s`): slow endpoints, timeouts.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// One JSON object per delivery instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(text: &str) -> Result<StatusCode, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("{text:?} is not an HTTP status"))
}

/// What the sink knows between requests.
struct Sink {
    args: SinkArgs,
    secret: Option<SigningSecret>,
    /// Requests seen per `webhook-id`.
    attempts: Mutex<HashMap<String, usize>>,
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let secret = args
        .secret
        .as_deref()
        .map(SigningSecret::parse)
        .transpose()
        .context("--secret")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", args.listen))?;
    println!("herald sink listening on http://{}", listener.local_addr()?);
    let sink = Arc::new(Sink {
        args,
        secret,
        attempts: Mutex::default(),
    });
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move { sink.answer(&method, &uri, &headers, &body).await }
        },
    );
    axum::serve(listener, app).await.context("serving the sink")
}

impl Sink {
    async fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let id = header("webhook-id").unwrap_or("-");
        let status = self.status_for(id);
        if let Some(delay) = self.args.delay {
            tokio::time::sleep(delay).await;
        }
        let signature = match &self.secret {
            None => Verdict::Unchecked,
            Some(secret) => match verify(
                secret,
                id,
                header("webhook-timestamp").unwrap_or(""),
                header("webhook-signature").unwrap_or(""),
                body,
                OffsetDateTime::now_utc().unix_timestamp(),
                TOLERANCE_SECS,
            ) {
                Ok(()) => Verdict::Ok,
                Err(err) => Verdict::Fail(err.to_string()),
            },
        };
        let seen = Seen {
            method,
            uri,
            id,
            event_type: header("herald-event-type").unwrap_or("-"),
            attempt: header("herald-attempt").unwrap_or("-"),
            status,
            signature,
            body,
        };
        println!(
            "{}",
            if self.args.json {
                seen.json()
            } else {
                seen.line()
            }
        );
        status
    }

    /// The status for this event's next attempt.
    fn status_for(&self, id: &str) -> StatusCode {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.len() >= REMEMBERED_EVENTS && !attempts.contains_key(id) {
            attempts.clear();
        }
        let seen = attempts.entry(id.to_owned()).or_default();
        let statuses = &self.args.status;
        let status = statuses[(*seen).min(statuses.len() - 1)];
        *seen += 1;
        status
    }
}

enum Verdict {
    Ok,
    Fail(String),
    Unchecked,
}

/// One delivery as the sink saw and answered it.
struct Seen<'a> {
    method: &'a Method,
    uri: &'a Uri,
    id: &'a str,
    event_type: &'a str,
    attempt: &'a str,
    status: StatusCode,
    signature: Verdict,
    body: &'a [u8],
}

impl Seen<'_> {
    fn line(&self) -> String {
        let signature = match &self.signature {
            Verdict::Ok => "signature OK".to_owned(),
            Verdict::Fail(why) => format!("signature FAIL ({why})"),
            Verdict::Unchecked => "signature not checked (no --secret)".to_owned(),
        };
        let text = String::from_utf8_lossy(self.body);
        let mut shown: String = text.chars().take(SHOWN_BODY_CHARS).collect();
        if text.chars().count() > SHOWN_BODY_CHARS {
            shown.push('…');
        }
        format!(
            "{} {} {}  id={} type={} attempt={} -> {}  {signature}  {shown}",
            now(),
            self.method,
            self.uri,
            self.id,
            self.event_type,
            self.attempt,
            self.status.as_u16(),
        )
    }

    fn json(&self) -> String {
        let (signature, error) = match &self.signature {
            Verdict::Ok => ("ok", None),
            Verdict::Fail(why) => ("fail", Some(why.as_str())),
            Verdict::Unchecked => ("unchecked", None),
        };
        let body = serde_json::from_slice::<Value>(self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(self.body).into_owned()));
        json!({
            "time": now(),
            "method": self.method.as_str(),
            "path": self.uri.to_string(),
            "id": self.id,
            "type": self.event_type,
            "attempt": self.attempt.parse::<u32>().ok(),
            "answered": self.status.as_u16(),
            "signature": signature,
            "signature_error": error,
            "body": body,
        })
        .to_string()
    }
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
