//! Payload filters end to end: subscriptions created through the API with a
//! `filter` on `data`, labels and attributes get exactly the events that pass
//! it; a missing field or a type mismatch is no match; a filter that does not
//! parse is a 422 naming `filter`, on every path that saves one.

use std::{collections::BTreeSet, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, receiver::Receiver, subscription};

/// The ids of the next `n` deliveries to `hook`.
async fn ids(hook: &Receiver, n: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for _ in 0..n {
        let request = hook.next_request(Duration::from_secs(10)).await;
        got.insert(request.header("webhook-id").to_owned());
    }
    got
}

#[tokio::test]
async fn filters_on_data_labels_and_numbers_decide_who_gets_what() {
    let app = TestApp::spawn().await;
    let subs = [
        (
            "failed-main",
            r#"data.build.status == "failed" and data.build.branch in ["main", "release"]"#,
        ),
        (
            "prod-label",
            r#"labels.env == 'prod' and type == "build.done""#,
        ),
        ("slow", "data.duration_ms > 1000"),
        (
            "not-main",
            r#"not exists(data.build.branch) or data.build.branch != "main""#,
        ),
        ("nobody", r#"data.build.status == "cancelled""#),
    ];
    let mut hooks = Vec::new();
    for (name, filter) in subs {
        let hook = Receiver::start([]).await;
        let mut body = subscription(name, &hook.url(), &["*"]);
        body["filter"] = json!(filter);
        let (status, reply) = app.api(Method::POST, "/v1/subscriptions", Some(body)).await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(reply["filter"], filter, "the reply shows the filter");
        hooks.push((name, hook));
    }
    app.wait_snapshot_current().await;

    let events = [
        (
            "e1",
            json!({"env": "prod"}),
            json!({"build": {"status": "failed", "branch": "main"}, "duration_ms": 1500}),
        ),
        (
            "e2",
            json!({"env": "dev"}),
            json!({"build": {"status": "failed", "branch": "feature/x"}, "duration_ms": 200}),
        ),
        (
            "e3",
            json!({"env": "prod"}),
            json!({"build": {"status": "passed", "branch": "release"}, "duration_ms": 1000}),
        ),
        ("e4", json!({"env": "staging"}), Value::Null),
        // A number field holding a string: `> 1000` cannot tell, so no match.
        ("e5", json!({}), json!({"duration_ms": "long"})),
    ];
    for (id, labels, data) in &events {
        let mut event = json!({"id": id, "type": "build.done", "labels": labels});
        if !data.is_null() {
            event["data"] = data.clone();
        }
        app.publish(event).await;
    }
    let expected: [(&str, &[&str]); 5] = [
        ("failed-main", &["e1"]),
        ("prod-label", &["e1", "e3"]),
        ("slow", &["e1"]),
        ("not-main", &["e2", "e3", "e4", "e5"]),
        ("nobody", &[]),
    ];
    for ((name, hook), (expected_name, want)) in hooks.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(ids(hook, want.len()).await, want, "subscription {name}");
    }
    // A stated quiet window: nothing else arrives anywhere.
    for (_, hook) in &hooks {
        hook.assert_quiet(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_filter_is_shown_replaced_by_a_patch_and_removed_with_null() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut body = subscription("deploys", &hook.url(), &["deployment.*"]);
    body["filter"] = json!(r#"data.replicas >= 3"#);
    app.create_subscription(body).await;
    let (status, got) = app
        .api(Method::GET, "/v1/subscriptions/deploys", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["filter"], "data.replicas >= 3");

    let publish = |id: &str, replicas: u32| json!({"id": id, "type": "deployment.started", "data": {"replicas": replicas}});
    app.publish(publish("small", 1)).await;
    app.publish(publish("big", 5)).await;
    assert_eq!(ids(&hook, 1).await, BTreeSet::from(["big".to_owned()]));

    let (status, patched) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/deploys",
            Some(json!({"filter": "data.replicas < 3"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["filter"], "data.replicas < 3");
    app.wait_snapshot_current().await;
    app.publish(publish("small-2", 1)).await;
    app.publish(publish("big-2", 5)).await;
    assert_eq!(ids(&hook, 1).await, BTreeSet::from(["small-2".to_owned()]));

    let (status, patched) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/deploys",
            Some(json!({"filter": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched.get("filter").is_none(), "{patched}");
    app.wait_snapshot_current().await;
    app.publish(publish("any", 2)).await;
    assert_eq!(ids(&hook, 1).await, BTreeSet::from(["any".to_owned()]));
    hook.assert_quiet(Duration::from_millis(300)).await;

    // Whitespace is no filter, as with `selector`.
    let mut blank = subscription("deploys", &hook.url(), &["deployment.*"]);
    blank["filter"] = json!("  ");
    let (status, replaced) = app
        .api(Method::PUT, "/v1/subscriptions/deploys", Some(blank))
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert!(replaced.get("filter").is_none(), "{replaced}");
}

#[tokio::test]
async fn a_bad_filter_is_a_422_naming_filter_on_create_replace_and_patch() {
    let app = TestApp::spawn().await;
    app.create_subscription(subscription("ok", "https://x.example.com/", &["*"]))
        .await;
    let bad = [
        ("data.status = \"failed\"", "compare with '=='"),
        ("status == \"failed\"", "unknown field `status`"),
        ("data.x == 1 &&", "write `and`"),
        ("type == 5", "compare it with a quoted string"),
        (
            &*format!("{}data.x == 1{}", "(".repeat(40), ")".repeat(40)),
            "deeper than 32",
        ),
        (
            &*format!("data.x == \"{}\"", "a".repeat(5000)),
            "at most 4096",
        ),
    ];
    for (filter, says) in bad {
        let with_filter = |name: &str| {
            let mut body = subscription(name, "https://x.example.com/", &["*"]);
            body["filter"] = json!(filter);
            body
        };
        let requests = [
            (Method::POST, "/v1/subscriptions", with_filter("new")),
            (Method::PUT, "/v1/subscriptions/ok", with_filter("ok")),
            (
                Method::PATCH,
                "/v1/subscriptions/ok",
                json!({"filter": filter}),
            ),
        ];
        for (method, path, body) in requests {
            let (status, reply) = app.api(method.clone(), path, Some(body)).await;
            assert_eq!(status, 422, "{method} {path} {filter:.60}: {reply}");
            let detail = &reply["error"]["details"][0];
            assert_eq!(detail["field"], "filter", "{reply}");
            let message = detail["message"].as_str().unwrap();
            assert!(message.contains(says), "{filter:.60}: {message}");
        }
    }
    let (_, got) = app.api(Method::GET, "/v1/subscriptions/ok", None).await;
    assert!(got.get("filter").is_none(), "nothing bad was saved: {got}");
}
