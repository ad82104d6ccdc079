//! `herald serve` as a user runs it: the binary, configured by environment,
//! started and signalled by PID.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{AMQP_URL, TOKEN, eventually, free_port};

/// `herald serve` as a user runs it: the binary, configured by environment.
pub struct Herald {
    pub child: Child,
    pub api: String,
}

impl Herald {
    pub fn start(prefix: &str) -> Self {
        Self::start_with(prefix, &[], Stdio::inherit())
    }

    /// With extra `HERALD__*` (or other) variables, and stderr sent to `stderr`.
    pub fn start_with(prefix: &str, env: &[(&str, &str)], stderr: Stdio) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        for (key, _) in std::env::vars() {
            if key.starts_with("HERALD__") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(["serve"])
            .env("HERALD__AMQP__URL", AMQP_URL)
            .env("HERALD__AMQP__PREFIX", prefix)
            .env("HERALD__AMQP__QUEUE_TYPE", "classic")
            .env("HERALD__AMQP__PREFETCH", "50")
            .env("HERALD__REDIS__PREFIX", prefix)
            .env("HERALD__API__LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD__API__TOKEN", TOKEN)
            .env("HERALD__WORKER__CONCURRENCY", "20")
            .env("HERALD__WORKER__SHUTDOWN_TIMEOUT", "10s")
            .env("HERALD__DELIVERY__MAX_ATTEMPTS", "20")
            .env("HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
            .env("HERALD__DELIVERY__RETRY_INITIAL", "200ms")
            .env("HERALD__DELIVERY__RETRY_MULTIPLIER", "1.5")
            .env("HERALD__DELIVERY__RETRY_MAX_DELAY", "1s")
            .env(
                "HERALD__LOG__LEVEL",
                std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            child,
            api: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_ready(&self) {
        let (http, url) = (reqwest::Client::new(), format!("{}/readyz", self.api));
        eventually(Duration::from_secs(30), "herald /readyz", || {
            let (http, url) = (http.clone(), url.clone());
            Box::pin(async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            })
        })
        .await;
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The `herald` binary for a one-off command, configured as `TestApp` is for
/// `prefix`: no `HERALD__*` from the developer's shell leaks in.
pub fn herald_command(prefix: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD__") {
            command.env_remove(key);
        }
    }
    command
        .env("HERALD__AMQP__URL", AMQP_URL)
        .env("HERALD__AMQP__PREFIX", prefix)
        .env("HERALD__AMQP__QUEUE_TYPE", "classic")
        .env("HERALD__REDIS__PREFIX", prefix)
        .env("HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS", "true");
    command
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of process `pid`, 0 once it is gone.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
