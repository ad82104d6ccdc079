//! `herald subscriptions apply | export | list | get | delete` as an operator
//! runs them: the binary with the server's configuration, against the real
//! Redis, next to a running herald that picks the changes up.

use std::{path::Path, process::Output, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, process::herald_command, receiver::Receiver};

/// Runs `herald subscriptions ARGS` for the app's prefix.
fn subscriptions(app: &TestApp, args: &[&str]) -> Output {
    herald_command(app.prefix())
        .arg("subscriptions")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn lines(out: &Output) -> Vec<String> {
    stdout(out).lines().map(str::to_owned).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn two(url: &str) -> String {
    format!(
        "subscriptions:\n  - name: hooks\n    url: {url}\n    events: [\"deployment.*\"]\n  \
         - name: other\n    url: https://other.example.com/\n    events: [\"*\"]\n    enabled: false\n"
    )
}

#[tokio::test]
async fn applying_a_file_twice_changes_nothing_the_second_time_and_the_worker_delivers() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "subs.yaml", &two(&hook.url()));

    let first = lines(&subscriptions(&app, &["apply", "-f", &file]));
    assert_eq!(first, ["created    hooks", "created    other"]);
    let second = lines(&subscriptions(&app, &["apply", "-f", &file]));
    assert_eq!(
        second,
        [
            "unchanged  hooks",
            "unchanged  other",
            "(nothing to change)"
        ]
    );

    app.wait_snapshot_current().await;
    let (_, secret) = app
        .api(Method::GET, "/v1/subscriptions/hooks/secret", None)
        .await;
    app.publish(json!({"type": "deployment.failed"})).await;
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert!(request.verify(secret["secret"].as_str().unwrap()));
}

#[tokio::test]
async fn a_change_names_its_fields_keeps_the_secret_and_prune_deletes_the_rest() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "subs.yaml", &two("https://a.example.com/"));
    stdout(&subscriptions(&app, &["apply", "-f", &file]));
    let (_, before) = app
        .api(Method::GET, "/v1/subscriptions/hooks/secret", None)
        .await;

    let json = json!([{"name": "hooks", "url": "https://b.example.com/", "events": ["deployment.*"],
                       "headers": {"x-team": "platform"}}]);
    let changed = write(dir.path(), "changed.json", &json.to_string());
    let dry = lines(&subscriptions(
        &app,
        &["apply", "-f", &changed, "--prune", "--dry-run"],
    ));
    assert_eq!(
        dry,
        [
            "changed    hooks (headers, url)",
            "pruned     other",
            "(dry run: nothing was written)"
        ]
    );
    let (status, _) = app.api(Method::GET, "/v1/subscriptions/other", None).await;
    assert_eq!(status, 200, "a dry run writes nothing");

    let applied = lines(&subscriptions(&app, &["apply", "-f", &changed, "--prune"]));
    assert_eq!(
        applied,
        ["changed    hooks (headers, url)", "pruned     other"]
    );
    let (_, after) = app
        .api(Method::GET, "/v1/subscriptions/hooks/secret", None)
        .await;
    assert_eq!(after["secret"], before["secret"], "the secret is kept");
    let (status, _) = app.api(Method::GET, "/v1/subscriptions/other", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn one_invalid_entry_names_itself_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "- name: fine\n  url: https://ok.example.com/\n  events: ['*']\n\
         - name: ftp\n  url: ftp://example.com/\n  events: ['*']\n\
         - name: metadata\n  url: http://169.254.169.254/latest/\n  events: ['*']\n",
    );
    let out = subscriptions(&app, &["apply", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("subscriptions[1] (ftp): url: scheme \"ftp\" is not http or https"),
        "{stderr}"
    );
    assert!(
        stderr.contains("subscriptions[2] (metadata): url: forbidden target"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 subscriptions"), "{stderr}");
    let (_, list) = app.api(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(list["items"], json!([]), "nothing was written");
}

#[tokio::test]
async fn an_export_applies_back_unchanged_and_shows_secrets_only_when_asked() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "subs.yaml", &two("https://a.example.com/"));
    stdout(&subscriptions(&app, &["apply", "-f", &file]));

    let exported = stdout(&subscriptions(&app, &["export"]));
    assert!(!exported.contains("whsec_"), "{exported}");
    let back = write(dir.path(), "exported.yaml", &exported);
    let again = lines(&subscriptions(&app, &["apply", "-f", &back, "--prune"]));
    assert_eq!(
        again,
        [
            "unchanged  hooks",
            "unchanged  other",
            "(nothing to change)"
        ]
    );

    let with_secrets = stdout(&subscriptions(&app, &["export", "--with-secrets"]));
    assert_eq!(with_secrets.matches("whsec_").count(), 2, "{with_secrets}");
    let back = write(dir.path(), "with-secrets.yaml", &with_secrets);
    let again = lines(&subscriptions(&app, &["apply", "-f", &back]));
    assert_eq!(
        again,
        [
            "unchanged  hooks",
            "unchanged  other",
            "(nothing to change)"
        ]
    );
}

#[tokio::test]
async fn list_get_and_delete_print_tables_or_json() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "subs.yaml", &two("https://a.example.com/"));
    stdout(&subscriptions(&app, &["apply", "-f", &file]));

    let table = lines(&subscriptions(&app, &["list"]));
    assert!(table[0].starts_with("NAME"), "{table:?}");
    assert!(table[1].starts_with("hooks ") && table[1].contains("deployment.*"));
    assert!(table[2].starts_with("other ") && table[2].contains("false"));
    let listed: Value =
        serde_json::from_str(&stdout(&subscriptions(&app, &["list", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed[0].get("secret").is_none());

    let shown = stdout(&subscriptions(&app, &["get", "other"]));
    assert!(shown.contains("enabled  false"), "{shown}");
    let one: Value =
        serde_json::from_str(&stdout(&subscriptions(&app, &["get", "hooks", "--json"]))).unwrap();
    assert_eq!(one["url"], "https://a.example.com/");

    assert_eq!(
        lines(&subscriptions(&app, &["delete", "hooks"])),
        ["deleted    hooks"]
    );
    let gone = subscriptions(&app, &["get", "hooks"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no subscription named \"hooks\""));
}

#[tokio::test]
async fn the_shipped_example_file_applies() {
    let app = TestApp::spawn().await;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/subscriptions.example.yaml"
    );
    let created = lines(&subscriptions(&app, &["apply", "-f", example]));
    assert_eq!(created.len(), 4, "{created:?}");
    assert!(
        created.iter().all(|l| l.starts_with("created ")),
        "{created:?}"
    );
    let again = lines(&subscriptions(&app, &["apply", "-f", example]));
    assert_eq!(
        again.last().map(String::as_str),
        Some("(nothing to change)")
    );
}
