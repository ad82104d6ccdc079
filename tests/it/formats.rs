//! What a receiver gets by format: Slack and Teams messages checked field by
//! field, templates with their context and `credential()`, and the sandbox.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{
    TestApp,
    receiver::{Receiver, Reply},
};

fn event() -> serde_json::Value {
    json!({"id": "fmt-1", "type": "deployment.failed", "source": "argo", "time": "2026-11-26T10:00:00Z",
           "labels": {"env": "prod", "project": "api"}, "data": {"service": "api", "version": "1.4.2"}})
}

#[tokio::test]
async fn slack_gets_text_and_blocks() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription(
            json!({"name": "slack", "url": hook.url(), "events": ["*"], "format": "slack",
            "template": "{{ event.type }} on {{ event.labels.env }} (attempt {{ attempt }})"}),
        )
        .await;
    app.publish(event()).await;
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert!(request.verify(&secret));
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(body["text"], "deployment.failed on prod (attempt 1)");
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(
        blocks[0],
        json!({"type": "header", "text": {"type": "plain_text", "text": "deployment.failed", "emoji": false}})
    );
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(
        blocks[1]["text"]["text"],
        "deployment.failed on prod (attempt 1)"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Source*\nargo",
            "*Time*\n2026-11-26T10:00:00Z",
            "*Labels*\nenv=prod, project=api"
        ]
    );
    assert_eq!(
        blocks[3]["text"]["text"],
        "```{\"service\":\"api\",\"version\":\"1.4.2\"}```"
    );
    assert_eq!(blocks[4]["type"], "context");
    assert!(
        blocks[4]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("fmt-1")
    );
}

#[tokio::test]
async fn teams_gets_an_adaptive_card() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    app.create_subscription(
        json!({"name": "teams", "url": hook.url(), "events": ["*"], "format": "teams"}),
    )
    .await;
    app.publish(event()).await;
    let body = hook.next_request(Duration::from_secs(10)).await.json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["body"][0]["text"], "deployment.failed");
    assert_eq!(
        card["body"][1]["text"], "deployment.failed from argo",
        "the default text"
    );
    let facts = card["body"][2]["facts"].as_array().unwrap();
    assert_eq!(facts[0], json!({"title": "Source", "value": "argo"}));
    assert_eq!(facts[2], json!({"title": "Event", "value": "fmt-1"}));
    assert!(facts.contains(&json!({"title": "env", "value": "prod"})));
    assert_eq!(card["body"][3]["fontType"], "Monospace");
}

#[tokio::test]
async fn templates_render_body_headers_and_url_with_credentials_that_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("cred-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(dir.path().join("HOOK_TOKEN"), format!("{token}\n")).unwrap();
    std::fs::write(dir.path().join("HOOK_PATH"), "hook").unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::spawn_with(move |c| c.credentials.dir = path).await;
    let hook = Receiver::start([]).await;
    let base = hook.url().trim_end_matches("/hook").to_owned();
    let secret = app
        .create_subscription(json!({
            "name": "tpl", "events": ["*"], "format": "template",
            "url": format!("{base}/{{{{ credential('HOOK_PATH') }}}}"),
            "template": "{\"summary\": {{ (event.type ~ ' in ' ~ event.labels.env) | tojson }}, \"data\": {{ event.data | tojson }}, \"sub\": {{ subscription.name | tojson }}}",
            "headers": {"authorization": "Bearer {{ credential('HOOK_TOKEN') }}", "x-attempt": "{{ attempt }}"},
        }))
        .await;
    app.publish(event()).await;
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.path, "/hook", "the URL template was rendered");
    assert_eq!(request.header("authorization"), format!("Bearer {token}"));
    assert_eq!(request.header("x-attempt"), "1");
    assert!(
        request.verify(&secret),
        "the rendered body is what is signed"
    );
    assert_eq!(
        request.json(),
        json!({"summary": "deployment.failed in prod", "data": {"service": "api", "version": "1.4.2"}, "sub": "tpl"})
    );
    // The value never appears in what herald shows or stores.
    let (_, shown) = app.api(Method::GET, "/v1/subscriptions/tpl", None).await;
    let (_, list) = app.api(Method::GET, "/v1/subscriptions", None).await;
    let metrics = app.metrics().await;
    let stored: Option<String> = {
        let client = redis::Client::open(app.config.redis.url.expose()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::AsyncCommands::hget(
            &mut conn,
            format!("{}:subscriptions", app.config.redis.prefix),
            "tpl",
        )
        .await
        .unwrap()
    };
    for (what, text) in [
        ("get", shown.to_string()),
        ("list", list.to_string()),
        ("metrics", metrics),
        ("redis", stored.unwrap()),
    ] {
        assert!(!text.contains(&token), "the credential leaked into {what}");
    }
}

#[tokio::test]
async fn a_missing_credential_sends_nothing_and_is_retried_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::spawn_with(move |c| {
        c.credentials.dir = path;
        c.delivery.max_attempts = 20.try_into().unwrap();
        c.delivery.retry_max_delay = Duration::from_millis(300);
    })
    .await;
    let hook = Receiver::start([]).await;
    let mut sub = json!({"name": "later", "url": hook.url(), "events": ["*"]});
    sub["headers"] = json!({"x-key": "{{ credential('LATE_KEY') }}"});
    app.create_subscription(sub).await;
    app.publish(json!({"type": "a.b", "id": "waits"})).await;
    hook.assert_quiet(Duration::from_millis(800)).await;
    std::fs::write(dir.path().join("LATE_KEY"), "now-here").unwrap();
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("x-key"), "now-here");
    assert_ne!(
        request.header("herald-attempt"),
        "1",
        "the first attempts were not sent"
    );
}

#[tokio::test]
async fn template_failures_dead_letter_as_render_error() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::ok()]).await;
    let cases = [
        ("undefined", "{\"x\": {{ event.nope.deeper }}}", None),
        (
            "runaway",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            Some("text/plain"),
        ),
        (
            "huge",
            "{% for i in range(100000) %}{{ range(1000) | join(',') }}{% endfor %}",
            Some("text/plain"),
        ),
        ("not-json", "this is not json", None),
    ];
    for (name, template, content_type) in &cases {
        let mut body = json!({"name": name, "url": hook.url(), "events": [format!("{name}.*")], "format": "template", "template": template});
        if let Some(ct) = content_type {
            body["content_type"] = json!(ct);
        }
        app.create_subscription(body).await;
        app.publish(json!({"type": format!("{name}.happened")}))
            .await;
    }
    let dead = app.take_dead(cases.len(), Duration::from_secs(20)).await;
    for letter in &dead {
        assert_eq!(
            letter.header("x-herald-reason").as_deref(),
            Some("render_error"),
            "{:?}",
            letter.header("x-herald-subscription")
        );
        assert!(
            letter
                .header("x-herald-last-error")
                .unwrap()
                .starts_with("render_error: ")
        );
    }
    hook.assert_quiet(Duration::from_millis(300)).await;

    // A template that does not parse is refused when saved.
    let (status, reply) = app
        .api(Method::POST, "/v1/subscriptions", Some(json!({"name": "broken", "url": hook.url(), "events": ["*"], "format": "template", "template": "{{ oops"})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(reply["error"]["details"][0]["field"], "template");
}
