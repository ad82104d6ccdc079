//! A RabbitMQ node and a Redis of the test's own, started as child processes
//! and faulted by PID (SIGKILL, SIGSTOP, SIGCONT, alarms): the shared services
//! other tests run against are never touched.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{eventually, free_port};

/// Sends `signal` (e.g. "-KILL", "-STOP", "-CONT") to a process this test started.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A private RabbitMQ node (Debian's package, own node name, ports and data
/// directory). Its data survives `kill` + `start`, as a real broker's does.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    /// `HOME` of the node and its CLI: where the Erlang cookie is.
    home: PathBuf,
    pub node: String,
    port: u16,
    /// `rabbitmq.conf`, when the node has one.
    conf: Option<PathBuf>,
    dist_port: u16,
    script: Option<Child>,
}

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl PrivateBroker {
    pub async fn start() -> Self {
        Self::start_in(None).await
    }

    /// A node with `conf` as its `rabbitmq.conf` (e.g. a TLS listener).
    pub async fn start_with_config(conf: &str) -> Self {
        let mut broker = Self::unstarted(None);
        std::fs::write(broker.dir.path().join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        broker.conf = Some(broker.dir.path().join("rabbitmq.conf"));
        broker.boot().await;
        broker
    }

    /// A node whose Erlang cookie is in `home` (shared by a cluster's nodes),
    /// or in a home of its own.
    async fn start_in(home: Option<PathBuf>) -> Self {
        let mut broker = Self::unstarted(home);
        broker.boot().await;
        broker
    }

    fn unstarted(home: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("enabled_plugins"), "[].").expect("plugins file");
        Self {
            home: home.unwrap_or_else(|| dir.path().to_owned()),
            node: format!(
                "herald-chaos-{}-{}@localhost",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            port: free_port(),
            dist_port: free_port(),
            conf: None,
            dir,
            script: None,
        }
    }

    /// The URL herald and the test's publishers use: a 2 s heartbeat, so a hung
    /// broker is noticed within seconds.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f?heartbeat=2", self.port)
    }

    /// Starts the node (again, after `kill`) and waits until AMQP connects.
    pub async fn boot(&mut self) {
        assert!(self.script.is_none(), "the node is already running");
        let path = self.dir.path();
        let log = std::fs::File::create(path.join("server.out")).expect("log file");
        let child = Command::new(SERVER)
            .env("HOME", &self.home)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", path.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path.join("enabled_plugins"),
            )
            .env(
                "RABBITMQ_CONFIG_FILE",
                self.conf.clone().unwrap_or_else(|| path.join("none")),
            )
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{SERVER} starts (Debian's rabbitmq-server): {e}"));
        self.script = Some(child);
        let url = self.url();
        let started = Instant::now();
        eventually(
            Duration::from_secs(90),
            "the private broker to accept AMQP",
            || {
                let url = url.clone();
                Box::pin(async move {
                    let conn = lapin::Connection::connect(&url, Default::default())
                        .await
                        .ok()?;
                    let _ = conn.close(200, "probe".into()).await;
                    Some(())
                })
            },
        )
        .await;
        println!("private broker {} up in {:?}", self.node, started.elapsed());
    }

    /// The Erlang VM's PID: the start script's only child.
    pub fn beam_pid(&self) -> u32 {
        let script = self.script.as_ref().expect("the node is running").id();
        let children =
            std::fs::read_to_string(format!("/proc/{script}/task/{script}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("the start script has the VM as its child")
    }

    /// SIGKILL of the VM, as a crashed or OOM-killed broker.
    pub fn kill(&mut self) {
        signal(self.beam_pid(), "-KILL");
        let mut script = self.script.take().expect("the node is running");
        let _ = script.wait();
    }

    pub fn freeze(&self) {
        signal(self.beam_pid(), "-STOP");
    }

    pub fn thaw(&self) {
        signal(self.beam_pid(), "-CONT");
    }

    /// `rabbitmqctl` against this node only.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new(CTL)
            .env("HOME", &self.home)
            .args(["-q", "-n", &self.node])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.script.is_some() {
            let beam = self.beam_pid();
            let _ = Command::new("kill")
                .args(["-CONT", &beam.to_string()])
                .status();
            let _ = Command::new("kill")
                .args(["-KILL", &beam.to_string()])
                .status();
            if let Some(mut script) = self.script.take() {
                let _ = script.wait();
            }
        }
    }
}

/// Private nodes clustered with `rabbitmqctl join_cluster`: quorum queues
/// declared once it stands are replicated on every node.
pub struct PrivateCluster {
    pub nodes: Vec<PrivateBroker>,
    _home: tempfile::TempDir,
}

impl PrivateCluster {
    pub async fn start(size: usize) -> Self {
        let home = tempfile::tempdir().expect("a temp dir");
        let cookie = home.path().join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string()).expect("cookie");
        // Erlang refuses a cookie others can read.
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .expect("cookie mode");
        let started = Instant::now();
        let booting = (0..size).map(|_| PrivateBroker::start_in(Some(home.path().to_owned())));
        let nodes = futures_util::future::join_all(booting).await;
        let first = nodes[0].node.clone();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &first]);
            node.ctl(&["start_app"]);
        }
        let cluster = Self { nodes, _home: home };
        cluster.await_running(size).await;
        println!("private cluster of {size} up in {:?}", started.elapsed());
        cluster
    }

    /// Waits until `count` nodes run, as the first live node sees it.
    pub async fn await_running(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let running = self.running_nodes();
            if running >= count {
                return;
            }
            assert!(Instant::now() < deadline, "{running} of {count} nodes run");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn running_nodes(&self) -> usize {
        let Some(node) = self.nodes.iter().find(|n| n.script.is_some()) else {
            return 0;
        };
        let status = node.ctl(&["cluster_status", "--formatter", "json"]);
        serde_json::from_str::<serde_json::Value>(&status)
            .ok()
            .and_then(|s| s["running_nodes"].as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// Every node's URL, comma-separated (as `HERALD__AMQP__URL` takes them).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(PrivateBroker::url).collect();
        urls.join(",")
    }

    /// The node whose AMQP connections include one named `name` (the
    /// client's `connection_name`).
    pub fn node_holding(&self, name: &str) -> Option<usize> {
        let node = self.nodes.iter().find(|n| n.script.is_some())?;
        let listed = node.ctl(&[
            "list_connections",
            "port",
            "client_properties",
            "--formatter",
            "json",
        ]);
        let connections: serde_json::Value = serde_json::from_str(&listed).ok()?;
        // client_properties: [[key, type, value], ...]
        let named = |c: &&serde_json::Value| {
            c["client_properties"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p[0] == "connection_name" && p[2] == name)
        };
        let port = connections.as_array()?.iter().find(named)?["port"].as_u64()?;
        self.nodes.iter().position(|n| u64::from(n.port) == port)
    }
}

/// A Redis of the test's own. `persistent` keeps its data across a restart
/// (append-only file, fsync always); otherwise it restarts empty, like CI's.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl PrivateRedis {
    pub async fn start(persistent: bool) -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temp dir"),
            persistent,
        };
        redis.boot().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub async fn boot(&mut self) {
        let dir: PathBuf = self.dir.path().into();
        let (appendonly, fsync) = if self.persistent {
            ("yes", "always")
        } else {
            ("no", "no")
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", appendonly])
            .args(["--appendfsync", fsync])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(10), "the private redis up", || {
            let url = url.clone();
            Box::pin(async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            })
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL redis");
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}
