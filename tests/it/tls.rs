//! TLS to RabbitMQ (`amqps://`) and Redis (`rediss://`), both requiring a
//! client certificate, with a CA this test makes (openssl): herald serves and
//! delivers over both, its CLI publishes over TLS, and a CA that does not
//! match, or no client certificate, is refused with a clear error.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use serde_json::json;

use crate::support::{
    TOKEN, eventually, free_port,
    process::{Herald, herald_command},
    receiver::Receiver,
    services::PrivateBroker,
    unique_prefix,
};

#[tokio::test]
async fn herald_talks_mutual_tls_to_rabbitmq_and_redis_and_refuses_a_wrong_ca() {
    crate::support::init();
    let pki = Pki::make();
    let redis = TlsRedis::start(&pki);
    let amqps_port = free_port();
    let broker = PrivateBroker::start_with_config(&format!(
        "listeners.ssl.default = {amqps_port}\n\
         ssl_options.cacertfile = {ca}\n\
         ssl_options.certfile = {cert}\n\
         ssl_options.keyfile = {key}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        ca = pki.path("ca.pem"),
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
    ))
    .await;
    let amqps = format!("amqps://guest:guest@localhost:{amqps_port}/%2f?heartbeat=5");
    let rediss = format!("rediss://localhost:{}/", redis.port);
    let prefix = unique_prefix();
    let tls = |ca: &str| {
        vec![
            ("HERALD__AMQP__URL".to_owned(), amqps.clone()),
            ("HERALD__REDIS__URL".to_owned(), rediss.clone()),
            ("HERALD__TLS__CA_FILE".to_owned(), pki.path(ca)),
            ("HERALD__TLS__CERT_FILE".to_owned(), pki.path("client.pem")),
            ("HERALD__TLS__KEY_FILE".to_owned(), pki.path("client.key")),
        ]
    };

    let env = tls("ca.pem");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let herald = Herald::start_with(&prefix, &env, Stdio::inherit());
    herald.wait_ready().await;
    let receiver = Receiver::start([]).await;
    subscribe(&herald, &receiver).await;

    // The CLI publishes over TLS with the same settings, as an operator's would.
    let published = run(herald_command(&prefix)
        .envs(env.iter().copied())
        .args(["publish", "--type", "tls.test", "--id", "tls-1"]));
    assert!(published.status.success(), "{}", text(&published));
    let delivered = receiver.next_request(Duration::from_secs(20)).await;
    assert_eq!(delivered.json()["id"], "tls-1");
    let on_tls = broker.ctl(&["list_connections", "ssl", "client_properties"]);
    let herald_tls = on_tls
        .lines()
        .filter(|l| l.contains("herald") && l.starts_with("true"))
        .count();
    assert!(
        herald_tls >= 2,
        "herald's connections are not TLS:\n{on_tls}"
    );

    // A CA that did not sign the servers' certificates.
    let wrong = tls("other-ca.pem");
    let wrong: Vec<(&str, &str)> = wrong
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (server, args) in [
        ("RabbitMQ", &["publish", "--type", "tls.test"][..]),
        ("Redis", &["subscriptions", "list"][..]),
    ] {
        let refused = run(herald_command(&prefix)
            .envs(wrong.iter().copied())
            .args(args));
        assert!(
            !refused.status.success() && text(&refused).contains("UnknownIssuer"),
            "{server} with a wrong CA: not a certificate error: {}",
            text(&refused)
        );
        println!("tls: {server} with a wrong CA: {}", text(&refused).trim());
    }

    // No client certificate: both servers require one.
    let anonymous = run(herald_command(&prefix)
        .env("HERALD__AMQP__URL", &amqps)
        .env("HERALD__TLS__CA_FILE", pki.path("ca.pem"))
        .args(["publish", "--type", "tls.test"]));
    assert!(!anonymous.status.success(), "{}", text(&anonymous));
    println!(
        "tls: without a client certificate: {}",
        text(&anonymous).trim()
    );

    // A key without its certificate stops start-up naming the key.
    let half = run(herald_command(&prefix)
        .env("HERALD__TLS__KEY_FILE", pki.path("client.key"))
        .args(["check-config"]));
    assert!(!half.status.success());
    assert!(
        text(&half).contains("tls.cert_file: must be set with tls.key_file"),
        "{}",
        text(&half)
    );
}

async fn subscribe(herald: &Herald, receiver: &Receiver) {
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/subscriptions", herald.api))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "tls", "url": format!("{}/tls", receiver.url()), "events": ["tls.*"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let url = format!("{}/readyz", herald.api);
    eventually(Duration::from_secs(10), "the snapshot to hold it", || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let ready: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
            (ready["snapshot_version"].as_u64() >= Some(1)).then_some(())
        })
    })
    .await;
}

fn run(command: &mut Command) -> Output {
    command.output().expect("herald runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A CA, a server certificate for localhost and a client certificate it
/// signed, and a second CA that signed nothing here.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn make() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN=herald test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        pki.leaf(
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        pki.leaf(
            "client",
            "subjectAltName=DNS:herald\nextendedKeyUsage=clientAuth",
        );
        pki
    }

    /// `<name>.key` and `<name>.pem`, signed by the CA with `extensions`.
    fn leaf(&self, name: &str, extensions: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.ext")), extensions).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            text(&output)
        );
    }

    fn path(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        path.to_string_lossy().into_owned()
    }
}

/// redis-server listening on TLS only, requiring a client certificate.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(pki: &Pki) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert-file", &pki.path("server.pem")])
            .args(["--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.pem")])
            .args([
                "--tls-auth-clients",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        wait_for_port(port);
        redis
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
