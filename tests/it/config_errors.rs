use std::process::Command;

fn herald(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(args);
    // Only what the test sets: no HERALD__* from the developer's shell leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

#[test]
fn a_bad_duration_stops_start_up_with_exit_2_and_one_line_naming_the_key() {
    let out = herald(&["serve"], &[("HERALD__DELIVERY__TIMEOUT", "banana")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        "herald: config: delivery.timeout: invalid value string \"banana\", expected a duration"
    );
}

#[test]
fn an_unknown_queue_type_and_a_missing_token_are_named() {
    let out = herald(&["check-config"], &[("HERALD__AMQP__QUEUE_TYPE", "stream")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("herald: config: amqp.queue_type: "));

    let out = herald(
        &["serve", "--role", "api"],
        &[("HERALD__API__LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.token"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn a_config_file_layers_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[delivery]\ntimeout = \"3s\"\nmax_attempts = 5\n").unwrap();
    let out = herald(
        &["check-config", "--config", file.to_str().unwrap()],
        &[("HERALD__DELIVERY__MAX_ATTEMPTS", "7")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("timeout = \"3s\""), "{printed}");
    assert!(printed.contains("max_attempts = 7"), "{printed}");
}

#[test]
fn check_config_masks_secrets() {
    let out = herald(
        &["check-config"],
        &[
            ("HERALD__API__TOKEN", "super-secret-token"),
            ("HERALD__AMQP__URL", "amqp://herald:hunter2@broker:5672/%2f"),
            ("HERALD__REDIS__URL", "redis://:redispass@cache:6379/"),
        ],
    );
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    for secret in ["super-secret-token", "hunter2", "redispass"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        printed.contains("amqp://herald:***@broker:5672/%2f"),
        "{printed}"
    );
}
