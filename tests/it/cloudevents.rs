//! CloudEvents in (structured on AMQP and HTTP, batches, binary-mode AMQP) and
//! out (`format: cloudevents`, structured and binary), end to end.

use std::time::Duration;

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, receiver::Receiver, subscription};

const WITHIN: Duration = Duration::from_secs(10);

fn cloudevent(id: &str, team: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/orders", "type": "com.Example.Order/Created",
        "time": "2026-11-29T10:00:00Z", "subject": "order-42", "team": team, "priority": 3,
        "datacontenttype": "application/json", "data": {"total": 12.5, "items": ["a"]},
    })
}

async fn post(app: &TestApp, content_type: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(crate::support::TOKEN)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn structured_cloudevents_from_amqp_and_http_are_matched_by_type_and_extensions() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut sub = subscription("orders", &hook.url(), &["com.example.order-*"]);
    sub["selector"] = json!("team=core,priority in (3)");
    app.create_subscription(sub).await;

    app.publish(cloudevent("amqp-1", "core")).await;
    app.publish(cloudevent("amqp-other-team", "web")).await;
    let (status, reply) = post(
        &app,
        "application/cloudevents+json",
        &cloudevent("http-1", "core"),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let batch = json!([cloudevent("batch-1", "core"), cloudevent("batch-2", "core")]);
    let (status, reply) = post(&app, "application/cloudevents-batch+json", &batch).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["ids"], json!(["batch-1", "batch-2"]));

    let mut ids = Vec::new();
    for _ in 0..4 {
        let request = hook.next_request(WITHIN).await;
        let body = request.json();
        assert_eq!(body["type"], "com.example.order-created");
        assert_eq!(body["source"], "/orders");
        assert_eq!(body["time"], "2026-11-29T10:00:00Z");
        assert_eq!(
            body["labels"],
            json!({"priority": "3", "subject": "order-42", "team": "core"})
        );
        assert_eq!(body["data"], json!({"total": 12.5, "items": ["a"]}));
        ids.push(request.header("webhook-id").to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["amqp-1", "batch-1", "batch-2", "http-1"]);
    hook.assert_quiet(Duration::from_millis(500)).await;
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[tokio::test]
async fn binary_mode_amqp_messages_are_events_and_a_broken_one_is_rejected_with_its_headers() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut sub = subscription("builds", &hook.url(), &["ci.*"]);
    sub["selector"] = json!("pipeline=main");
    app.create_subscription(sub).await;

    // The AMQP binding's prefix, with typed values as an AMQP 1.0 bridge writes them.
    let mut headers = FieldTable::default();
    headers.insert("cloudEvents:specversion".into(), text("1.0"));
    headers.insert("cloudEvents:id".into(), text("bin-1"));
    headers.insert("cloudEvents:source".into(), text("urn:ci"));
    headers.insert("cloudEvents:type".into(), text("CI.Build.Finished"));
    headers.insert(
        "cloudEvents:time".into(),
        AMQPValue::Timestamp(1_764_410_400),
    );
    headers.insert("cloudEvents:pipeline".into(), text("main"));
    headers.insert("cloudEvents:attempt".into(), AMQPValue::LongInt(2));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    app.amqp
        .publish_with("ci.build.finished", br#"{"result":"green"}"#, properties)
        .await;

    // The `ce-` prefix, a text body.
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-2"),
        ("ce-source", "urn:ci"),
        ("ce-type", "ci.log"),
        ("ce-pipeline", "main"),
    ] {
        headers.insert(name.into(), text(value));
    }
    let properties = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_headers(headers);
    app.amqp
        .publish_with("ci.log", b"build 7 passed", properties)
        .await;

    let first = hook.next_request(WITHIN).await;
    let second = hook.next_request(WITHIN).await;
    let (first, second) = if first.header("webhook-id") == "bin-1" {
        (first.json(), second.json())
    } else {
        (second.json(), first.json())
    };
    assert_eq!(first["type"], "ci.build.finished");
    assert_eq!(first["time"], "2025-11-29T10:00:00Z");
    assert_eq!(first["labels"], json!({"attempt": "2", "pipeline": "main"}));
    assert_eq!(first["data"], json!({"result": "green"}));
    assert_eq!(second["data"], "build 7 passed");

    // No source: refused, and the message keeps the headers that carried it.
    let mut headers = FieldTable::default();
    headers.insert("ce-specversion".into(), text("1.0"));
    headers.insert("ce-id".into(), text("bin-3"));
    headers.insert("ce-type".into(), text("ci.log"));
    app.amqp
        .publish_with(
            "ci.log",
            b"{}",
            BasicProperties::default().with_headers(headers),
        )
        .await;
    let rejected = app.take("rejected", 1, WITHIN).await;
    let error = rejected[0].header("x-herald-error").unwrap();
    assert!(error.contains("source: required"), "{error}");
    assert_eq!(rejected[0].header("ce-id").as_deref(), Some("bin-3"));
    hook.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_cloudevents_content_type_takes_only_cloudevents() {
    let app = TestApp::spawn().await;
    let native = json!({"type": "a.b"});
    let cases = [
        (
            "application/cloudevents+json",
            native.clone(),
            "specversion",
        ),
        (
            "application/cloudevents+json",
            json!([cloudevent("x", "core")]),
            "body",
        ),
        (
            "application/cloudevents-batch+json",
            cloudevent("x", "core"),
            "body",
        ),
        (
            "application/cloudevents-batch+json",
            json!([cloudevent("x", "core"), native]),
            "[1].specversion",
        ),
        (
            "application/cloudevents+json",
            json!({"specversion": "1.0", "id": "1", "type": "a"}),
            "source",
        ),
        (
            "application/json",
            json!({"specversion": "2.0", "id": "1", "source": "s", "type": "a"}),
            "specversion",
        ),
    ];
    for (content_type, body, field) in cases {
        let (status, reply) = post(&app, content_type, &body).await;
        assert_eq!(status, 422, "{content_type} {body}: {reply}");
        assert_eq!(
            reply["error"]["details"][0]["field"], field,
            "{content_type} {body}: {reply}"
        );
    }
}

#[tokio::test]
async fn format_cloudevents_sends_signed_structured_and_binary_events() {
    let app = TestApp::spawn().await;
    let structured_hook = Receiver::start([]).await;
    let binary_hook = Receiver::start([]).await;
    let mut structured = subscription("ce-structured", &structured_hook.url(), &["*"]);
    structured["format"] = json!("cloudevents");
    let mut binary = subscription("ce-binary", &binary_hook.url(), &["*"]);
    binary["format"] = json!("cloudevents");
    binary["cloudevents_mode"] = json!("binary");
    let structured_secret = app.create_subscription(structured).await;
    let binary_secret = app.create_subscription(binary).await;

    app.publish(
        json!({"id": "out-1", "type": "deployment.finished", "source": "argo",
        "time": "2026-11-29T10:00:00Z", "labels": {"env": "prod", "app.kubernetes.io/name": "api"},
        "data": {"ok": true}}),
    )
    .await;

    let request = structured_hook.next_request(WITHIN).await;
    assert!(request.verify(&structured_secret));
    assert_eq!(
        request.header("content-type"),
        "application/cloudevents+json"
    );
    assert_eq!(
        request.json(),
        json!({"specversion": "1.0", "id": "out-1", "source": "argo",
            "type": "deployment.finished", "time": "2026-11-29T10:00:00Z", "env": "prod",
            "datacontenttype": "application/json", "data": {"ok": true}})
    );

    let request = binary_hook.next_request(WITHIN).await;
    assert!(request.verify(&binary_secret));
    assert_eq!(request.header("content-type"), "application/json");
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "out-1"),
        ("ce-source", "argo"),
        ("ce-type", "deployment.finished"),
        ("ce-time", "2026-11-29T10:00:00Z"),
        ("ce-env", "prod"),
    ] {
        assert_eq!(request.header(name), value, "{name}");
    }
    assert_eq!(request.json(), json!({"ok": true}));
}

#[tokio::test]
async fn cloudevents_mode_needs_format_cloudevents() {
    let app = TestApp::spawn().await;
    let mut sub = subscription("json-binary", "https://example.com/", &["*"]);
    sub["cloudevents_mode"] = json!("binary");
    let (status, reply) = app
        .api(Method::POST, "/v1/subscriptions", Some(sub.clone()))
        .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["error"]["details"][0]["field"], "cloudevents_mode");
    sub["format"] = json!("cloudevents");
    sub["cloudevents_mode"] = json!("both");
    let (status, reply) = app.api(Method::POST, "/v1/subscriptions", Some(sub)).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["error"]["details"][0]["field"], "cloudevents_mode");
}
