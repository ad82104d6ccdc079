//! `herald sink`: a local receiver for trying herald out. It prints each
//! delivery and, given the subscription's secret, whether the Standard
//! Webhooks signature verifies. It answers 200 to everything.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
};
use time::OffsetDateTime;

use crate::subscriptions::signature::{SigningSecret, verify};

/// Verifiers reject signatures older (or newer) than this.
const TOLERANCE_SECS: i64 = 5 * 60;

pub async fn run(listen: SocketAddr, secret: Option<&str>) -> anyhow::Result<()> {
    let secret = secret
        .map(SigningSecret::parse)
        .transpose()
        .context("--secret")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    println!("herald sink listening on http://{}", listener.local_addr()?);
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let secret = secret.clone();
            async move {
                println!(
                    "{}",
                    describe(&method, &uri, &headers, &body, secret.as_ref())
                );
                StatusCode::OK
            }
        },
    );
    axum::serve(listener, app).await.context("serving the sink")
}

fn describe(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&SigningSecret>,
) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    let verdict = match secret {
        None => "signature not checked (no --secret)".to_owned(),
        Some(secret) => match verify(
            secret,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            body,
            OffsetDateTime::now_utc().unix_timestamp(),
            TOLERANCE_SECS,
        ) {
            Ok(()) => "signature ok".to_owned(),
            Err(err) => format!("signature INVALID: {err}"),
        },
    };
    let text = String::from_utf8_lossy(body);
    let shown: String = text.chars().take(2000).collect();
    format!(
        "{method} {uri}  id={} type={} attempt={}  {verdict}\n  {shown}",
        header("webhook-id"),
        header("herald-event-type"),
        header("herald-attempt"),
    )
}
