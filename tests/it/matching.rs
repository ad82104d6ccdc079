use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};

use crate::support::{TestApp, receiver::Receiver};

/// Who gets what: each subscription's events and selector against a set of
/// events; exactly the expected pairs are delivered and nothing else.
#[tokio::test]
async fn patterns_and_selectors_decide_exactly_who_gets_what() {
    let app = TestApp::spawn().await;
    let subs: [(&str, Value, Option<&str>); 7] = [
        ("all", json!(["*"]), None),
        ("deploys", json!(["deployment.*"]), None),
        (
            "failed",
            json!(["deployment.failed", "TESTWORKFLOW.END.FAILED"]),
            None,
        ),
        ("prod-only", json!(["*"]), Some("env=prod")),
        (
            "product-not-staging",
            json!(["*"]),
            Some("project=product*,env!=staging"),
        ),
        (
            "set-ops",
            json!(["*.end.*"]),
            Some("test-type in (e2e,load),!skip"),
        ),
        ("has-team", json!(["*"]), Some("team,env notin (dev)")),
    ];
    let mut hooks = Vec::new();
    for (name, events, selector) in &subs {
        let hook = Receiver::start([]).await;
        let mut body = json!({"name": name, "url": hook.url(), "events": events});
        if let Some(s) = selector {
            body["selector"] = json!(s);
        }
        let (status, reply) = app
            .api(reqwest::Method::POST, "/v1/subscriptions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        hooks.push((*name, hook));
    }
    app.wait_snapshot_current().await;

    let events = [
        (
            "e1",
            "deployment.failed",
            json!({"env": "prod", "project": "product-a"}),
        ),
        (
            "e2",
            "deployment.succeeded",
            json!({"env": "staging", "project": "product-b"}),
        ),
        (
            "e3",
            "testworkflow.end.failed",
            json!({"test-type": "e2e", "team": "qa", "env": "dev"}),
        ),
        (
            "e4",
            "testworkflow.end.success",
            json!({"test-type": "load", "skip": "yes", "team": "qa"}),
        ),
        ("e5", "data.quality.check", json!({})),
    ];
    for (id, t, labels) in &events {
        app.publish(json!({"id": id, "type": t, "labels": labels}))
            .await;
    }
    let expected: [(&str, &[&str]); 7] = [
        ("all", &["e1", "e2", "e3", "e4", "e5"]),
        ("deploys", &["e1", "e2"]),
        ("failed", &["e1", "e3"]),
        ("prod-only", &["e1"]),
        ("product-not-staging", &["e1"]),
        ("set-ops", &["e3"]),
        ("has-team", &["e4"]),
    ];
    for ((name, hook), (expected_name, ids)) in hooks.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        let mut got = BTreeSet::new();
        for _ in 0..ids.len() {
            got.insert(
                hook.next_request(Duration::from_secs(10))
                    .await
                    .header("webhook-id")
                    .to_owned(),
            );
        }
        let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "subscription {name}");
    }
    // A stated quiet window: nothing more arrives anywhere.
    for (name, hook) in &hooks {
        hook.assert_quiet(Duration::from_millis(if *name == "all" { 700 } else { 50 }))
            .await;
    }
}
