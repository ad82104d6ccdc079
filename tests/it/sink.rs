//! `herald sink` as a user runs it, answering a real herald's deliveries as told.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{TestApp, free_port, process::herald_command, subscription};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A running `herald sink` and the lines it printed.
struct Sink {
    child: Child,
    lines: mpsc::Receiver<String>,
    url: String,
}

impl Sink {
    fn start(args: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut child = herald_command("unused")
            .args(["sink", "--listen", &listen])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let sink = Self {
            child,
            lines,
            url: format!("http://{listen}/hooks"),
        };
        assert!(sink.next_line().starts_with("herald sink listening on"));
        sink
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .expect("the sink printed a line")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_sink_fails_attempts_as_told_and_verifies_each_signature() {
    let app = TestApp::spawn().await;
    let sink = Sink::start(&["--secret", SECRET, "--status", "500,200", "--json"]);
    let mut body = subscription("rehearsal", &sink.url, &["*"]);
    body["secret"] = json!(SECRET);
    app.create_subscription(body).await;
    app.publish(json!({"id": "evt-1", "type": "deployment.failed"}))
        .await;

    let lines = tokio::task::spawn_blocking(move || {
        let lines = [sink.next_line(), sink.next_line()];
        (sink, lines)
    })
    .await
    .unwrap()
    .1;
    let seen: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen[0]["answered"], 500, "{}", lines[0]);
    assert_eq!(seen[0]["attempt"], 1);
    assert_eq!(seen[1]["answered"], 200, "{}", lines[1]);
    assert_eq!(seen[1]["attempt"], 2);
    for one in &seen {
        assert_eq!(one["id"], "evt-1");
        assert_eq!(one["type"], "deployment.failed");
        assert_eq!(one["signature"], "ok", "{one}");
        assert_eq!(one["body"]["type"], "deployment.failed");
    }
}

#[tokio::test]
async fn a_wrong_secret_and_a_delay_show_on_the_text_line() {
    let app = TestApp::spawn().await;
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkhIQ==";
    let sink = Sink::start(&["--secret", other, "--delay", "300ms"]);
    app.create_subscription(subscription("wrong-key", &sink.url, &["*"]))
        .await;
    let started = std::time::Instant::now();
    app.publish(json!({"id": "evt-2", "type": "a.b"})).await;
    let line = tokio::task::spawn_blocking(move || sink.next_line())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "{line}");
    assert!(
        line.contains("id=evt-2 type=a.b attempt=1 -> 200"),
        "{line}"
    );
    assert!(line.contains("signature FAIL"), "{line}");
}

#[test]
fn a_status_that_is_not_one_is_refused_by_name() {
    let out = herald_command("unused")
        .args(["sink", "--status", "500,abc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"abc\" is not an HTTP status"), "{stderr}");
}
