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
    node: String,
    port: u16,
    dist_port: u16,
    script: Option<Child>,
}

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl PrivateBroker {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("enabled_plugins"), "[].").expect("plugins file");
        let mut broker = Self {
            node: format!(
                "herald-chaos-{}-{}@localhost",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            port: free_port(),
            dist_port: free_port(),
            dir,
            script: None,
        };
        broker.boot().await;
        broker
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
            .env("HOME", path)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", path.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", path.join("none"))
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
            .env("HOME", self.dir.path())
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
