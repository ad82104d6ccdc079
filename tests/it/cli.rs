use std::time::Duration;

use crate::support::{TestApp, process::herald_command, receiver::Receiver, subscription};

#[tokio::test]
async fn herald_publish_sends_an_event_that_is_delivered_with_labels_and_data() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start([]).await;
    let secret = app
        .create_subscription({
            let mut body = subscription("cli", &hook.url(), &["deployment.*"]);
            body["selector"] = serde_json::json!("env=prod");
            body
        })
        .await;
    let out = herald_command(app.prefix())
        .args([
            "publish",
            "--type",
            "deployment.succeeded",
            "--label",
            "env=prod",
            "--label",
            "team=web",
        ])
        .args([
            "--data",
            r#"{"version":"1.2.3"}"#,
            "--id",
            "cli-1",
            "--source",
            "ci",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli-1");

    let request = hook.next_request(Duration::from_secs(10)).await;
    assert!(request.verify(&secret));
    let body = request.json();
    assert_eq!(
        body["labels"],
        serde_json::json!({"env": "prod", "team": "web"})
    );
    assert_eq!(body["data"], serde_json::json!({"version": "1.2.3"}));
    assert_eq!(body["source"], "ci");

    let bad = herald_command(app.prefix())
        .args(["publish", "--type", "Not Valid"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("type"));
}
