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
    let dead = app.take_dead(1, Duration::from_secs(10)).await;
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
        c.delivery.allowed_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
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

/// Literal targets in every spelling the guard must see through. Saving them is
/// a 422, so they are written straight into Redis, as an old or hand-edited
/// record would be, to prove delivery and the test route refuse them too.
const FORBIDDEN: [&str; 42] = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f000001/",
    "http://0.0.0.0/",
    "http://0/",
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/",
    "http://169.254.0.1/",
    "http://100.100.100.200/",
    "http://192.0.0.1/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://198.51.100.1/",
    "http://203.0.113.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:a00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00:ec2::254]/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[::127.0.0.1]/",
    "https://[100::1]/",
];

#[tokio::test]
async fn forty_two_forbidden_literal_targets_are_refused_at_delivery_and_on_the_test_route() {
    let app = TestApp::spawn_with(|c| c.delivery.allow_private_targets = false).await;
    let client = redis::Client::open(app.config.redis.url.expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = format!("{}:subscriptions", app.config.redis.prefix);
    for (i, url) in FORBIDDEN.iter().enumerate() {
        let record = json!({"name": format!("t{i}"), "url": url, "method": "POST", "events": ["*"], "format": "json",
                            "enabled": true, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
        let _: () =
            redis::AsyncCommands::hset(&mut conn, &hash, format!("t{i}"), record.to_string())
                .await
                .unwrap();
    }
    let _: () = redis::AsyncCommands::incr(&mut conn, format!("{hash}:version"), 1)
        .await
        .unwrap();
    app.wait_snapshot_current().await;

    app.publish(json!({"type": "a.b", "id": "probe"})).await;
    let dead = app
        .take_dead(FORBIDDEN.len(), Duration::from_secs(20))
        .await;
    for letter in &dead {
        let sub = letter.header("x-herald-subscription").unwrap();
        assert_eq!(
            letter.header("x-herald-reason").as_deref(),
            Some("forbidden_target"),
            "{sub}"
        );
    }
    for (i, url) in FORBIDDEN.iter().enumerate() {
        let (_, reply) = app
            .api(Method::POST, &format!("/v1/subscriptions/t{i}/test"), None)
            .await;
        assert_eq!(reply["ok"], false, "{url}: {reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("forbidden target"),
            "{url}: {reply}"
        );
    }
}

#[tokio::test]
async fn a_huge_response_is_read_only_up_to_the_cap() {
    use axum::{Router, body::Body};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // 100 MiB, generated as it is read: only what herald pulls is ever made.
    let app_router = Router::new().fallback(|| async {
        let chunks = futures_util::stream::iter(
            (0..100).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024 * 1024])),
        );
        Body::from_stream(chunks)
    });
    let server = tokio::spawn(async move { axum::serve(listener, app_router).await });
    let app = TestApp::spawn_with(|c| c.delivery.max_response_bytes = 64 * 1024).await;
    app.create_subscription(crate::support::subscription(
        "huge",
        &format!("http://{addr}/"),
        &["*"],
    ))
    .await;
    let before = crate::support::process::rss_kib(std::process::id());
    let started = std::time::Instant::now();
    let (_, reply) = app
        .api(Method::POST, "/v1/subscriptions/huge/test", None)
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["response_body"].as_str().unwrap().len(),
        4096,
        "shown truncated"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped early: {:?}",
        started.elapsed()
    );
    let grown = crate::support::process::rss_kib(std::process::id()).saturating_sub(before);
    println!("100 MiB response: read stopped at the cap, RSS grew {grown} KiB");
    assert!(grown < 32 * 1024, "memory stays flat: grew {grown} KiB");
    server.abort();
}
