//! herald scraped by a real Prometheus (the distribution's `prometheus`, installed by
//! `scripts/check-observability.sh`): after successes, a retry, a dead letter and a
//! rejection, every query of `dashboards/herald.json` returns data, the values agree
//! with what the test caused, and every rule of `deploy/prometheus/alerts.yml` evaluates.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{
    TestApp, eventually, free_port,
    receiver::{Receiver, Reply},
    subscription,
};

const DASHBOARD: &str = include_str!("../../dashboards/herald.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const ALERTS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");

/// What the dashboard's template variables and Grafana's range macros stand for here.
const SUBSTITUTIONS: [(&str, &str); 4] = [
    ("$__rate_interval", "15s"),
    ("$__range", "5m"),
    ("$job", ".*"),
    ("$instance", ".*"),
];

#[tokio::test]
async fn a_real_prometheus_gets_data_for_every_dashboard_query_and_evaluates_every_alert_rule() {
    let started = Instant::now();
    let binary = prometheus_binary();
    let app = TestApp::spawn_with(|c| c.metrics.queue_refresh = Duration::from_secs(1)).await;
    let dead_queue = format!("{}.dead", app.prefix());
    let rejected_queue = format!("{}.rejected", app.prefix());

    // Prometheus scrapes before any traffic: the counters' first samples are their
    // zeros, so increase() sees every later increment.
    let mut prometheus = Prometheus::start(&binary, app.addr.port());
    prometheus.wait_for_target().await;

    let ok = Receiver::start([]).await;
    let flaky = Receiver::start([Reply::status(500), Reply::ok()]).await;
    let down = Receiver::start([]).await;
    down.always(Reply::status(500));
    app.create_subscription(subscription("ok", &ok.url(), &["ok.*"]))
        .await;
    app.create_subscription(subscription("flaky", &flaky.url(), &["flaky.*"]))
        .await;
    let mut body = subscription("down", &down.url(), &["down.*"]);
    body["max_attempts"] = json!(2);
    app.create_subscription(body).await;

    app.publish(json!({"type": "ok.first", "id": "ok-1"})).await;
    app.publish(json!({"type": "flaky.first", "id": "flaky-1"}))
        .await;
    app.publish(json!({"type": "down.first", "id": "down-1"}))
        .await;
    app.amqp.publish_event("x", b"not json").await;

    let within = Duration::from_secs(10);
    ok.next_request(within).await;
    flaky.next_request(within).await;
    flaky.next_request(within).await;
    down.next_request(within).await;
    down.next_request(within).await;

    // The dead letter reaches the log, and <p>.dead hands everything over to it.
    let dead = app.take_dead(1, Duration::from_secs(5)).await;
    assert_eq!(
        dead[0].header("x-herald-reason").as_deref(),
        Some("max_attempts")
    );
    prometheus
        .wait_for_value(
            &format!(r#"herald_queue_messages{{queue="{dead_queue}"}}"#),
            0.0,
        )
        .await;
    prometheus
        .wait_for_value(
            &format!(r#"herald_queue_messages{{queue="{rejected_queue}"}}"#),
            1.0,
        )
        .await;

    // rate() and increase() over the short windows below need several samples.
    let scrapes = r#"count_over_time(up{job="herald"}[1m]) >= 6"#;
    prometheus
        .query_non_empty(scrapes, "six scrapes of herald")
        .await;

    // No allow-list for empty answers: every panel's metric has a sample here (label
    // values start at 0), so a query that returns nothing is a finding.
    println!("dashboard queries verified against Prometheus:");
    for (panel, expr) in dashboard_queries() {
        let what = format!("panel {panel:?} to return data for {expr}");
        let result = prometheus.query_non_empty(&expr, &what).await;
        println!(
            "  [{panel}] {}\n      => {}",
            one_line(&expr),
            show(&result)
        );
    }

    // Exactly what the traffic caused; successes and retries at least, since a
    // broker redelivery may repeat an attempt; increase() extrapolates, so about 1.
    let exactly = [
        (
            r#"sum(herald_deliveries_total{job="herald", outcome="dead"})"#,
            1.0,
        ),
        (
            r#"sum(herald_dead_letters_total{job="herald", reason="max_attempts"})"#,
            1.0,
        ),
        (r#"sum(herald_dead_letters_total{job="herald"})"#, 1.0),
        (r#"sum(herald_events_rejected_total{job="herald"})"#, 1.0),
    ];
    let at_least = [
        (
            r#"sum(herald_deliveries_total{job="herald", outcome="success"})"#,
            2.0,
        ),
        (
            r#"sum(herald_deliveries_total{job="herald", outcome="retry"})"#,
            2.0,
        ),
        (
            r#"sum(increase(herald_dead_letters_total{job="herald"}[5m]))"#,
            0.9,
        ),
    ];
    println!("sample values:");
    for (expr, expected) in exactly {
        let value = prometheus.value(expr).await;
        println!("  {expr} = {value}");
        assert!(value == expected, "{expr} = {value}, expected {expected}");
    }
    for (expr, min) in at_least {
        let value = prometheus.value(expr).await;
        println!("  {expr} = {value}");
        assert!(value >= min, "{expr} = {value}, expected at least {min}");
    }
    let build = prometheus.query(r#"herald_build_info{job="herald"}"#).await;
    println!("  herald_build_info => {}", show(&build));
    assert_eq!(build.len(), 1, "one herald_build_info series: {build:?}");
    assert_eq!(
        build[0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build:?}"
    );
    assert_eq!(sample(&build[0]), 1.0);

    let expected_rules = ALERTS
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    let rules = prometheus.wait_for_rules_evaluated().await;
    assert_eq!(
        rules.len(),
        expected_rules,
        "Prometheus loaded {} rules of group herald, alerts.yml has {expected_rules}",
        rules.len()
    );
    println!("alert rules evaluated without error:");
    for rule in &rules {
        println!(
            "  {} health={} state={}",
            rule["name"].as_str().unwrap_or_default(),
            rule["health"],
            rule["state"]
        );
    }

    let active = prometheus
        .wait_for_alert("HeraldDeadLettersIncreasing")
        .await;
    println!("active alerts: {active:?}");
    assert_eq!(
        active
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["HeraldDeadLettersIncreasing"],
        "only the dead-letter alert is pending or firing after this traffic"
    );

    // The exposition itself passes Prometheus' own linter.
    let exposition = app.metrics().await;
    let mut promtool = Command::new(prometheus_binary().with_file_name("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool comes with prometheus");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let linted = promtool.wait_with_output().unwrap();
    assert!(
        linted.status.success() && linted.stdout.is_empty() && linted.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
    println!(
        "promtool check metrics: clean ({} lines)",
        exposition.lines().count()
    );
    println!("prometheus test took {:?}", started.elapsed());
}

/// `prometheus` on the PATH or in /usr/bin; a missing one fails the test by name.
fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `prometheus` binary on the PATH or in /usr/bin: run scripts/check-observability.sh \
                 (it installs the distribution's prometheus package)"
            )
        })
}

/// Every `expr` of the dashboard's panels (rows' nested panels included), with its
/// panel's title, the template variables substituted.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("<untitled>");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) {
                    let expr = SUBSTITUTIONS
                        .iter()
                        .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value));
                    assert!(
                        !expr.contains('$'),
                        "panel {title:?} uses a variable this test does not substitute: {expr}"
                    );
                    out.push((title.to_owned(), expr));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboards/herald.json is JSON");
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    assert!(!out.is_empty(), "the dashboard has no queries");
    out
}

fn one_line(expr: &str) -> String {
    expr.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A vector result as `{labels} value, ...`.
fn show(result: &[Value]) -> String {
    result
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!(
                "{{{labels}}} {}",
                series["value"][1].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sample(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample value in {series}"))
}

/// A `prometheus` child process on a free port with its own data directory;
/// killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, herald_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: herald\n    static_configs:\n      \
                 - targets: [\"127.0.0.1:{herald_port}\"]\n",
                // A JSON string is a YAML double-quoted scalar.
                rules = serde_json::to_string(ALERTS_PATH).unwrap(),
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", binary.display()));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            log,
            _dir: dir,
        }
    }

    /// Waits until Prometheus answers and has scraped herald successfully.
    async fn wait_for_target(&mut self) {
        let (http, base) = (self.http.clone(), self.base.clone());
        let (child, log) = (&mut self.child, &self.log);
        eventually(Duration::from_secs(20), r#"up{job="herald"} = 1"#, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "prometheus exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            let (http, base) = (http.clone(), base.clone());
            Box::pin(async move {
                let result = try_query(&http, &base, r#"up{job="herald"}"#).await.ok()?;
                (result.len() == 1 && sample(&result[0]) == 1.0).then_some(())
            })
        })
        .await;
    }

    /// The result vector of an instant query; an error status fails the test.
    async fn query(&self, expr: &str) -> Vec<Value> {
        try_query(&self.http, &self.base, expr)
            .await
            .unwrap_or_else(|err| panic!("{expr}: {err}"))
    }

    async fn query_non_empty(&self, expr: &str, what: &str) -> Vec<Value> {
        let (http, base, expr) = (self.http.clone(), self.base.clone(), expr.to_owned());
        // Counters need two samples in the window before rate() answers.
        eventually(Duration::from_secs(30), what, || {
            let (http, base, expr) = (http.clone(), base.clone(), expr.clone());
            Box::pin(async move {
                let result = try_query(&http, &base, &expr)
                    .await
                    .unwrap_or_else(|err| panic!("{expr}: {err}"));
                (!result.is_empty()).then_some(result)
            })
        })
        .await
    }

    /// The one sample of `expr`, which must return exactly one series.
    async fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr).await;
        assert_eq!(result.len(), 1, "{expr} returned {result:?}");
        sample(&result[0])
    }

    /// Waits until `expr` returns one series of value `expected`.
    async fn wait_for_value(&self, expr: &str, expected: f64) {
        let (http, base, expr) = (self.http.clone(), self.base.clone(), expr.to_owned());
        let what = format!("{expr} = {expected} in Prometheus");
        eventually(Duration::from_secs(15), &what, || {
            let (http, base, expr) = (http.clone(), base.clone(), expr.clone());
            Box::pin(async move {
                let result = try_query(&http, &base, &expr).await.ok()?;
                let value = sample(result.first()?);
                (result.len() == 1 && value == expected).then_some(())
            })
        })
        .await;
    }

    /// The rules of group `herald` once each has been evaluated; a rule whose
    /// evaluation failed fails the test with Prometheus's error.
    async fn wait_for_rules_evaluated(&self) -> Vec<Value> {
        let (http, url) = (self.http.clone(), format!("{}/api/v1/rules", self.base));
        eventually(
            Duration::from_secs(15),
            "every rule of group herald evaluated",
            || {
                let (http, url) = (http.clone(), url.clone());
                Box::pin(async move {
                    let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    assert_eq!(body["status"], "success", "{body}");
                    let group = body["data"]["groups"]
                        .as_array()?
                        .iter()
                        .find(|g| g["name"] == "herald")?;
                    let rules = group["rules"].as_array()?.clone();
                    for rule in &rules {
                        assert_ne!(
                            rule["health"], "err",
                            "rule {} fails to evaluate: {}",
                            rule["name"], rule["lastError"]
                        );
                    }
                    rules.iter().all(|r| r["health"] == "ok").then_some(rules)
                })
            },
        )
        .await
    }

    /// Waits until `name` is pending or firing; returns every active alert and its state.
    async fn wait_for_alert(&self, name: &str) -> Vec<(String, String)> {
        let (http, url) = (self.http.clone(), format!("{}/api/v1/alerts", self.base));
        let name = name.to_owned();
        eventually(
            Duration::from_secs(15),
            &format!("{name} pending or firing"),
            || {
                let (http, url, name) = (http.clone(), url.clone(), name.clone());
                Box::pin(async move {
                    let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    assert_eq!(body["status"], "success", "{body}");
                    let active: Vec<(String, String)> = body["data"]["alerts"]
                        .as_array()?
                        .iter()
                        .map(|a| {
                            (
                                a["labels"]["alertname"].as_str().unwrap_or("?").to_owned(),
                                a["state"].as_str().unwrap_or("?").to_owned(),
                            )
                        })
                        .collect();
                    active
                        .iter()
                        .any(|(n, state)| *n == name && (state == "pending" || state == "firing"))
                        .then_some(active)
                })
            },
        )
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn try_query(http: &reqwest::Client, base: &str, expr: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), [("query", expr)])
        .map_err(|e| e.to_string())?;
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("Prometheus answered {body}"));
    }
    body["data"]["result"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("not a vector result: {body}"))
}
