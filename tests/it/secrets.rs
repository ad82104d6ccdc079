//! Secrets stay secret: a herald process at DEBUG, delivering with credentials
//! in URL, header and body (with failures, retries and a dead letter), writes
//! logs in which no credential, signing secret or API token appears.

use std::{process::Stdio, time::Duration};

use serde_json::json;

use crate::support::{
    Broker, TOKEN,
    process::Herald,
    receiver::{Receiver, Reply},
    unique_prefix,
};

#[tokio::test]
async fn no_secret_appears_in_anything_herald_logs() {
    crate::support::init();
    let dir = tempfile::tempdir().unwrap();
    let credential = format!("cred-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(dir.path().join("LEAK_TOKEN"), &credential).unwrap();
    std::fs::write(dir.path().join("LEAK_PATH"), "hook").unwrap();
    let log_path = dir.path().join("herald.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let prefix = unique_prefix();
    let credentials_dir = dir.path().to_str().unwrap().to_owned();
    let herald = Herald::start_with(
        &prefix,
        &[
            ("HERALD__LOG__LEVEL", "debug"),
            ("HERALD__LOG__FORMAT", "json"),
            ("HERALD__CREDENTIALS__DIR", &credentials_dir),
            ("HERALD__DELIVERY__MAX_ATTEMPTS", "3"),
        ],
        Stdio::from(log),
    );
    herald.wait_ready().await;

    let hook = Receiver::start([Reply::status(500)]).await;
    let base = hook.url().trim_end_matches("/hook").to_owned();
    let signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let http = reqwest::Client::new();
    for body in [
        json!({"name": "leaky", "events": ["ok.*"], "format": "template", "secret": signing,
               "url": format!("{base}/{{{{ credential('LEAK_PATH') }}}}?key={{{{ credential('LEAK_TOKEN') }}}}"),
               "template": "{\"key\": {{ credential('LEAK_TOKEN') | tojson }}}",
               "headers": {"authorization": "Bearer {{ credential('LEAK_TOKEN') }}"}}),
        json!({"name": "missing", "events": ["missing.*"], "url": hook.url(),
               "headers": {"x-key": "{{ credential('NOT_MOUNTED') }}"}}),
        json!({"name": "down", "events": ["down.*"], "url": format!("{base}/down?key={credential}"),
               "headers": {"authorization": format!("Bearer {credential}")}}),
    ] {
        let response = http
            .post(format!("{}/v1/subscriptions", herald.api))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker = Broker::connect(&prefix).await;
    broker
        .publish_event("ok.a", br#"{"type":"ok.a","id":"leak-1"}"#)
        .await;
    broker
        .publish_event("missing.a", br#"{"type":"missing.a","id":"leak-2"}"#)
        .await;
    hook.always(Reply::status(500));
    broker
        .publish_event("down.a", br#"{"type":"down.a","id":"leak-3"}"#)
        .await;

    // The first request failed (500), the retry carries the credential too.
    let first = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(
        first.header("authorization"),
        format!("Bearer {credential}")
    );
    let log = format!("{prefix}.dead.log");
    let (dead, _) = broker
        .wait_for_stream(&log, 0, 2, Duration::from_secs(20))
        .await;
    assert_eq!(
        dead.len(),
        2,
        "missing and down both end dead after 3 attempts"
    );
    herald.signal("-TERM");
    let mut herald = herald;
    herald.child.wait().unwrap();

    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("delivery attempt"),
        "the log has attempt lines:\n{logged}"
    );
    assert!(
        logged.contains("missing_credential: NOT_MOUNTED"),
        "the name of a missing credential is logged"
    );
    for (what, secret) in [
        ("credential", credential.as_str()),
        ("signing secret", signing),
        ("API token", TOKEN),
    ] {
        assert!(!logged.contains(secret), "the {what} leaked into the log");
    }
    for letter in &dead {
        let headers = format!("{:?}", letter.headers);
        assert!(
            !headers.contains(&credential),
            "a dead letter's headers carry the credential"
        );
    }
    println!("log lines checked for secrets: {}", logged.lines().count());
}
