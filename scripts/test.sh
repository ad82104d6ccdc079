#!/usr/bin/env bash
# The whole test suite, for CI and for people: starts RabbitMQ and Redis when
# they are down, clears what earlier test runs left, then formatting, lints
# and every test. Tests use their own `test-<uuid>` prefixes on the shared
# broker and Redis, so this may run next to a herald deployment or a demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

step() {
    printf '\n==> %s\n' "$*"
}

step "services: RabbitMQ and Redis"
ensure_services

step "rabbitmq: test queues expire after 10 minutes unused"
# Test runs that crash or are killed leave their queues behind; this policy reaps them.
if command -v rabbitmqctl >/dev/null 2>&1; then
    if ! "${SUDO[@]}" rabbitmqctl -q set_policy --apply-to queues herald-test-expiry '^test-' '{"expires":600000}'; then
        echo "warning: could not set the herald-test-expiry policy; leftover test queues will stay" >&2
    fi
else
    echo "rabbitmqctl not found (the broker on port $RABBITMQ_PORT runs elsewhere): policy not set" >&2
fi

step "rabbitmq: delete the streams earlier test runs left (a policy cannot expire a stream)"
# Each test that dead-letters something gets a test-<uuid>.dead.log stream.
if command -v rabbitmqctl >/dev/null 2>&1; then
    "${SUDO[@]}" rabbitmqctl -q list_queues name type 2>/dev/null |
        awk '$2 == "stream" && $1 ~ /^test-/ {print $1}' |
        xargs -r -P 4 -n 1 "${SUDO[@]}" rabbitmqctl -q delete_queue >/dev/null || true
fi

step "redis: delete leftover test-* keys"
if command -v redis-cli >/dev/null 2>&1; then
    # --scan iterates without blocking the server; del in batches of 500 keys.
    redis-cli -p "$REDIS_PORT" --scan --pattern 'test-*' | xargs -r -n 500 redis-cli -p "$REDIS_PORT" del >/dev/null
else
    echo "redis-cli not found: leftover test keys not deleted" >&2
fi

step "observability: promtool checks of the alert rules and scrape config"
# Also installs Prometheus when missing: the real-Prometheus test needs it.
scripts/check-observability.sh

step "deploy: the Dockerfile, the compose stack and the Kubernetes manifests, offline"
# Real parsers and schemas (dockerfile-parse, the Compose Specification,
# kubernetes-validate, the operators' CRD schemas) in a virtualenv it makes.
scripts/check-deploy.sh

step "cloudevents: the herald binary against the CloudEvents and Standard Webhooks Python SDKs"
# Events made by the SDK go in every way herald reads them; deliveries are parsed by it.
scripts/check-cloudevents.sh

step "api: schemathesis against a live herald, every operation of GET /openapi.json"
# Builds herald, starts it (API role, own prefixes) and fuzzes it against its
# own OpenAPI document: no 5xx, every answer as documented.
scripts/check-api.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --locked --profile ci"
    cargo nextest run --locked --profile ci
else
    # Without nextest's filters: the fast suite, then the bounded chaos subset.
    step "cargo test --locked (cargo-nextest not installed)"
    cargo test --locked -- --skip chaos::
    cargo test --locked --test it -- chaos::broker::b1_ chaos::broker::b3_ chaos::fleet:: chaos::cluster::
fi
