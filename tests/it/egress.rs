use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, receiver::Receiver, subscription};

#[tokio::test]
async fn a_literal_private_target_is_refused_when_saved() {
    let app = TestApp::spawn_with(|c| c.delivery.allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/",
        "http://0x7f.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
    ] {
        let (status, reply) = app
            .api(
                Method::POST,
                "/v1/subscriptions",
                Some(subscription("ssrf", url, &["*"])),
            )
            .await;
        assert_eq!(status, 422, "{url}: {reply}");
        assert_eq!(reply["error"]["details"][0]["field"], "url", "{url}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("forbidden target"),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_and_dead_lettered() {
    let app = TestApp::spawn_with(|c| c.delivery.allow_private_targets = false).await;
    let hook = Receiver::start([]).await;
    // A host name passes the save-time check; the resolver judges its addresses at connect time.
    let url = hook.url().replace("127.0.0.1", "localhost");
    app.create_subscription(subscription("rebind", &url, &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "never-sent"}))
        .await;
    let dead = app.take("dead", 1, Duration::from_secs(10)).await;
    assert_eq!(
        dead[0].header("x-herald-reason").as_deref(),
        Some("forbidden_target")
    );
    assert!(
        dead[0]
            .header("x-herald-last-error")
            .unwrap()
            .contains("forbidden target")
    );
    assert_eq!(
        dead[0].header("x-herald-attempts").as_deref(),
        Some("1"),
        "never retried"
    );
    hook.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_allowed_cidr_opens_one_network_without_opening_all() {
    let app = TestApp::spawn_with(|c| {
        c.delivery.allow_private_targets = false;
        c.delivery.allowed_cidrs = vec!["127.0.0.0/8".into()];
    })
    .await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("inside", &hook.url(), &["*"]))
        .await;
    app.publish(json!({"type": "a.b", "id": "allowed"})).await;
    assert_eq!(
        hook.next_request(Duration::from_secs(10))
            .await
            .header("webhook-id"),
        "allowed"
    );
    let (status, _) = app
        .api(
            Method::POST,
            "/v1/subscriptions",
            Some(subscription("other", "http://10.1.2.3/", &["*"])),
        )
        .await;
    assert_eq!(status, 422, "10/8 stays closed");
    let (status, _) = app
        .api(
            Method::POST,
            "/v1/subscriptions",
            Some(subscription("meta", "http://169.254.169.254/", &["*"])),
        )
        .await;
    assert_eq!(status, 422, "metadata stays closed");
}
