use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{TOKEN, TestApp, receiver::Receiver, subscription};

#[tokio::test]
async fn a_single_event_is_accepted_with_its_id_and_delivered() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription(subscription("ci", &hook.url(), &["*"]))
        .await;
    let (status, reply) = app
        .api(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "deployment.failed", "labels": {"env": "prod"}})),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["ids"][0].as_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
        7,
        "a generated id is a UUIDv7"
    );
    let request = hook.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.header("webhook-id"), id);
    assert!(request.verify(&secret));
}

#[tokio::test]
async fn a_batch_is_accepted_whole_and_every_event_is_delivered() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    app.create_subscription(subscription("ci", &hook.url(), &["*"]))
        .await;
    let batch: Vec<_> = (0..20)
        .map(|i| json!({"type": "batch.item", "id": format!("b-{i}")}))
        .collect();
    let (status, reply) = app
        .api(Method::POST, "/v1/events", Some(json!(batch)))
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["ids"].as_array().unwrap().len(), 20);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(
            hook.next_request(Duration::from_secs(10))
                .await
                .header("webhook-id")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_name_the_field() {
    let app = TestApp::spawn_with(|c| c.limits.max_event_bytes = 2048).await;
    let url = app.url("/v1/events");

    let unauthorized = app
        .http
        .post(&url)
        .json(&json!({"type": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&json!({"type": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let bad_json = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let body: serde_json::Value = bad_json.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_json");

    let (status, body) = app
        .api(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "Not.Valid"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["field"], "type");

    let (status, body) = app
        .api(
            Method::POST,
            "/v1/events",
            Some(json!([{"type": "ok"}, {"type": "ok", "id": "bad id"}])),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["field"], "[1].id");

    let too_many: Vec<_> = (0..1001).map(|_| json!({"type": "a"})).collect();
    let app_big = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert!(
        app_big.status() == 413 || app_big.status() == 422,
        "{}",
        app_big.status()
    );

    let large = json!({"type": "a", "data": "x".repeat(4096)});
    let response = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&large)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Without Content-Length (chunked), the limit holds too.
    assert_eq!(chunked_post(app.addr, "/v1/events", 8, 512).await, 413);
}

#[tokio::test]
async fn the_api_answers_503_while_the_broker_is_unreachable() {
    // Nothing listens on port 1: the API's broker link never connects.
    let prefix = crate::support::unique_prefix();
    let mut config = crate::support::test_config(&prefix);
    config.amqp.url = herald::config::NodeUrls::new("amqp://guest:guest@127.0.0.1:1/%2f");
    crate::support::init();
    let app = herald::app::App::build(config, herald::app::Role::Api)
        .await
        .unwrap();
    let addr = app.api_addr();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run(cancel.clone()));
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{addr}/v1/events"))
        .bearer_auth(TOKEN)
        .json(&json!({"type": "a.b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("broker")),
        "{body}"
    );
    cancel.cancel();
    handle.await.unwrap().unwrap();
}

/// A raw HTTP/1.1 POST with `chunks` chunks of `size` bytes and no Content-Length; returns the status.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server may answer and close early
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = vec![0; 64];
    let n = stream.read(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}
