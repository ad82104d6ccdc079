#!/usr/bin/env bash
# CloudEvents interoperability: the real herald binary against the
# CloudEvents Python SDK (producer and receiver's parser) and the Standard
# Webhooks library, on the local RabbitMQ and Redis under a prefix of its own
# (tests/cloudevents/check_interop.py). The Python packages live in a
# virtualenv this script makes under target/. Called by scripts/test.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv=target/cloudevents-venv
ensure_venv "$venv" tests/cloudevents/requirements.txt

cargo build --locked --quiet --bin herald

# test-* so that scripts/test.sh's reapers take whatever a killed run leaves.
prefix="test-interop-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
cleanup() {
    if command -v rabbitmqctl >/dev/null 2>&1; then
        "${SUDO[@]}" rabbitmqctl -q list_queues name 2>/dev/null | grep "^$prefix\." |
            xargs -r -n 1 "${SUDO[@]}" rabbitmqctl -q delete_queue >/dev/null || true
    fi
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -p "$REDIS_PORT" --scan --pattern "$prefix*" | xargs -r redis-cli -p "$REDIS_PORT" del >/dev/null
    fi
}
trap cleanup EXIT

"$venv/bin/python" tests/cloudevents/check_interop.py target/debug/herald "$prefix"
