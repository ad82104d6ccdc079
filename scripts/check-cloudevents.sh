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

venv=target/cloudevents-venv
requirements=tests/cloudevents/requirements.txt
stamp=$venv/.requirements
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
    echo "check-cloudevents: making the virtualenv $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

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
