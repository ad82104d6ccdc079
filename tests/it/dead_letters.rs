//! Dead letters as an operator meets them: listed (read-only, paged), replayed
//! with attempts starting over, refused for a disabled or deleted
//! subscription, purged on purpose, through the API and `herald dead`; letters
//! left in `<p>.dead` before an upgrade; and a replay SIGKILLed half-way.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    Broker, TestApp,
    process::herald_command,
    receiver::{Receiver, Reply},
    subscription,
};

/// Waits until `GET /v1/dead` (with `query`) lists `n` dead letters; returns them.
async fn listed(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, page) = app
            .api(Method::GET, &format!("/v1/dead{query}"), None)
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.len() >= n || Instant::now() > deadline {
            assert_eq!(items.len(), n, "{page}");
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A subscription whose receiver answers 500 once per event, and that gives up at once.
async fn failing(app: &TestApp, name: &str) -> Receiver {
    let hook = Receiver::start([]).await;
    hook.always(Reply::status(500));
    let mut body = subscription(name, &hook.url(), &["*"]);
    body["max_attempts"] = json!(1);
    app.create_subscription(body).await;
    hook
}

#[tokio::test]
async fn listing_is_read_only_pages_by_cursor_and_filters() {
    let app = TestApp::spawn().await;
    let _hook = failing(&app, "down").await;
    for i in 0..5 {
        app.publish(json!({"id": format!("evt-{i}"), "type": "build.failed"}))
            .await;
    }
    let all = listed(&app, "", 5).await;
    let first = &all[0];
    assert_eq!(first["event_type"], "build.failed");
    assert_eq!(first["subscription"], "down");
    assert_eq!(first["reason"], "max_attempts");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_status"], 500);
    assert_eq!(first["last_error"], "HTTP 500");
    assert!(first["died_at"].as_str().unwrap().ends_with('Z'), "{first}");

    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app
            .api(Method::GET, &format!("/v1/dead?limit=2{cursor}"), None)
            .await;
        pages.push(page["items"].as_array().unwrap().len());
        match page["next_cursor"].as_u64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(listed(&app, "", 5).await, all, "listing takes nothing away");

    assert_eq!(
        listed(&app, "?reason=max_attempts&subscription=down", 5)
            .await
            .len(),
        5
    );
    assert!(listed(&app, "?reason=gone", 0).await.is_empty());
    assert!(listed(&app, "?subscription=other", 0).await.is_empty());
    for (query, field) in [
        ("?reason=bored", "reason"),
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?colour=red", "colour"),
    ] {
        let (status, reply) = app
            .api(Method::GET, &format!("/v1/dead{query}"), None)
            .await;
        assert_eq!(status, 422, "{query}: {reply}");
        assert_eq!(reply["error"]["details"][0]["field"], field);
    }
}

#[tokio::test]
async fn a_replay_delivers_again_with_attempts_starting_over() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(500), Reply::status(500)]).await;
    let mut body = subscription("flaky", &hook.url(), &["*"]);
    body["max_attempts"] = json!(2);
    app.create_subscription(body).await;
    app.publish(json!({"id": "evt-r", "type": "a.b"})).await;
    listed(&app, "", 1).await;
    assert_eq!(hook.requests().len(), 2);

    let (status, reply) = app
        .api(
            Method::POST,
            "/v1/dead/replay",
            Some(json!({"subscription": "flaky"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["replayed"], 1);
    assert_eq!(reply["items"][0]["event_id"], "evt-r");
    let replayed = hook.next_request(Duration::from_secs(10)).await;
    let replayed = if replayed.header("herald-attempt") == "2" {
        hook.next_request(Duration::from_secs(10)).await
    } else {
        replayed
    };
    assert_eq!(replayed.header("herald-attempt"), "1");
    assert_eq!(replayed.header("webhook-id"), "evt-r");
    assert!(
        listed(&app, "", 0).await.is_empty(),
        "a replayed dead letter is settled"
    );
}

#[tokio::test]
async fn a_replay_to_a_disabled_or_deleted_subscription_is_refused_until_it_can_deliver() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let mut body = subscription("paused", &hook.url(), &["*"]);
    body["enabled"] = json!(false);
    app.create_subscription(body).await;
    app.publish(json!({"id": "evt-p", "type": "a.b"})).await;
    let dead = listed(&app, "", 1).await;
    assert_eq!(dead[0]["reason"], "subscription_disabled");
    assert_eq!(dead[0]["attempts"], 0);

    let (status, reply) = app.api(Method::POST, "/v1/dead/replay", None).await;
    assert_eq!(status, 409, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("subscription `paused` is disabled"),
        "{message}"
    );
    assert!(hook.requests().is_empty());

    let (status, _) = app
        .api(
            Method::PATCH,
            "/v1/subscriptions/paused",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = app.api(Method::POST, "/v1/dead/replay", None).await;
    assert_eq!(status, 200, "{reply}");
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("webhook-id"), "evt-p");

    // Dead again, then the subscription is deleted: nothing to deliver to.
    app.api(
        Method::PATCH,
        "/v1/subscriptions/paused",
        Some(json!({"enabled": false})),
    )
    .await;
    app.wait_snapshot_current().await;
    app.publish(json!({"id": "evt-q", "type": "a.b"})).await;
    listed(&app, "", 1).await;
    app.api(Method::DELETE, "/v1/subscriptions/paused", None)
        .await;
    let (status, reply) = app
        .api(
            Method::POST,
            "/v1/dead/replay",
            Some(json!({"event_ids": ["evt-q"]})),
        )
        .await;
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
}

#[tokio::test]
async fn purge_drops_the_chosen_dead_letters_on_purpose() {
    let app = TestApp::spawn().await;
    let _hook = failing(&app, "noisy").await;
    for i in 0..3 {
        app.publish(json!({"id": format!("evt-{i}"), "type": "a.b"}))
            .await;
    }
    listed(&app, "", 3).await;
    let (status, reply) = app
        .api(
            Method::POST,
            "/v1/dead/purge",
            Some(json!({"event_ids": ["evt-1"]})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["purged"], 1);
    let left: Vec<Value> = listed(&app, "", 2)
        .await
        .iter()
        .map(|d| d["event_id"].clone())
        .collect();
    assert_eq!(left, [json!("evt-0"), json!("evt-2")]);
    let (_, reply) = app
        .api(
            Method::POST,
            "/v1/dead/purge",
            Some(json!({"reason": "max_attempts"})),
        )
        .await;
    assert_eq!(reply["purged"], 2);
    assert!(listed(&app, "", 0).await.is_empty());
}

#[tokio::test]
async fn dead_letters_left_in_the_queue_before_an_upgrade_are_listed_and_replayed() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("old", &hook.url(), &["*"]))
        .await;
    // Written the way herald wrote dead letters before the log existed.
    let channel = app.amqp.conn.create_channel().await.unwrap();
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("x-herald-reason", "max_attempts"),
        ("x-herald-subscription", "old"),
        ("herald-subscription", "old"),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    headers.insert("x-herald-attempts".into(), AMQPValue::LongLongInt(13));
    let body =
        json!({"id": "evt-old", "type": "a.b", "time": "2026-01-01T00:00:00Z", "labels": {}});
    channel
        .basic_publish(
            "".into(),
            format!("{}.dead", app.prefix()).as_str().into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap();
    let dead = listed(&app, "", 1).await;
    assert_eq!(dead[0]["event_id"], "evt-old");
    assert_eq!(dead[0]["attempts"], 13);
    let (status, _) = app.api(Method::POST, "/v1/dead/replay", None).await;
    assert_eq!(status, 200);
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("webhook-id"), "evt-old");
    assert_eq!(request.header("herald-attempt"), "1");
}

fn dead(app_prefix: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = herald_command(app_prefix)
        .arg("dead")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn herald_dead_lists_and_asks_before_it_replays_or_purges() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([Reply::status(500)]).await;
    let mut body = subscription("cli", &hook.url(), &["*"]);
    body["max_attempts"] = json!(1);
    app.create_subscription(body).await;
    app.publish(json!({"id": "evt-c", "type": "a.b"})).await;
    listed(&app, "", 1).await;
    let prefix = app.prefix().to_owned();

    let out = tokio::task::spawn_blocking({
        let prefix = prefix.clone();
        move || dead(&prefix, &["list"], "")
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("OFFSET"), "{table}");
    assert!(
        table.contains("max_attempts") && table.contains("evt-c"),
        "{table}"
    );

    let run = |args: &'static [&'static str], stdin: &'static str| {
        let prefix = prefix.clone();
        tokio::task::spawn_blocking(move || dead(&prefix, args, stdin))
    };
    let refused = run(&["replay"], "n\n").await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing replayed"));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("Replay these 1 dead letters? [y/N]")
    );
    assert_eq!(hook.requests().len(), 1, "nothing was replayed");

    let replayed = run(&["replay", "--subscription", "cli"], "y\n")
        .await
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("replayed  "));
    let request = hook.next_request(Duration::from_secs(10)).await;
    let request = if request.header("herald-attempt") == "1" && hook.requests().len() == 1 {
        hook.next_request(Duration::from_secs(10)).await
    } else {
        request
    };
    assert_eq!(request.header("webhook-id"), "evt-c");

    let json = run(&["list", "--json"], "").await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&json.stdout).unwrap(),
        json!([])
    );
    let purged = run(&["purge", "--yes"], "").await.unwrap();
    assert!(String::from_utf8_lossy(&purged.stdout).contains("no dead letters match"));
}

/// The queue depth of `queue`, read by a passive declare.
async fn depth(broker: &Broker, queue: &str) -> usize {
    let channel = broker.conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap();
    q.message_count() as usize
}

#[tokio::test]
async fn a_replay_killed_half_way_loses_nothing_and_repeats_at_most_what_was_in_flight() {
    const EVENTS: usize = 3000;
    let app = TestApp::spawn().await;
    let prefix = app.prefix().to_owned();
    // A disabled subscription dead-letters every event at once, without a request.
    let mut body = subscription("bulk", "https://bulk.example.com/", &["*"]);
    body["enabled"] = json!(false);
    app.create_subscription(body).await;
    for i in 0..EVENTS {
        let event = json!({"id": format!("evt-{i}"), "type": "bulk.x"});
        app.amqp
            .publish_event("bulk.x", event.to_string().as_bytes())
            .await;
    }
    let last = format!("?limit=1&cursor={}", EVENTS - 1);
    listed(&app, &last, 1).await;
    let enable = json!({"enabled": true});
    let (status, _) = app
        .api(Method::PATCH, "/v1/subscriptions/bulk", Some(enable))
        .await;
    assert_eq!(status, 200);
    // From here no worker takes tasks: what the replay sends stays in <p>.deliveries.
    app.stop().await;

    let broker = Broker::connect(&prefix).await;
    let deliveries = format!("{prefix}.deliveries");
    let mut child = herald_command(&prefix)
        .args(["dead", "replay", "--yes"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while depth(&broker, &deliveries).await < 300 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = depth(&broker, &deliveries).await;
    assert!(
        at_kill < EVENTS,
        "the kill came half-way ({at_kill} of {EVENTS} sent)"
    );

    let again = herald_command(&prefix)
        .args(["dead", "replay", "--yes"])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let tasks = depth(&broker, &deliveries).await;
    let messages = broker
        .take(&deliveries, tasks, Duration::from_secs(10))
        .await;
    let mut per_event = BTreeMap::new();
    for m in &messages {
        assert_eq!(m.header("herald-attempt").as_deref(), Some("1"));
        assert_eq!(m.header("herald-subscription").as_deref(), Some("bulk"));
        *per_event
            .entry(m.json()["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_event.len(),
        EVENTS,
        "every dead letter was replayed: nothing lost"
    );
    let duplicates = tasks - EVENTS;
    println!("replay killed after {at_kill} of {EVENTS} tasks; {duplicates} sent twice (bound 64)");
    assert!(duplicates <= 64, "{duplicates} sent twice");
}
