#!/usr/bin/env bash
# schemathesis against a live herald: builds and starts the real binary (API
# role only: nothing is delivered but the test route's one request, which
# tests/api/hooks.py points at herald itself) with its own amqp/redis prefix,
# waits for /readyz, then runs every operation of GET /openapi.json with the
# token. It fails on any 5xx and any answer that does not match the document
# (status, content type, headers, body schema, Allow on 405, auth enforced).
# Afterwards herald is stopped by its PID and the prefix's queues and keys are
# deleted. schemathesis lives in a virtualenv this script makes under target/
# (kept between runs, rebuilt when tests/api/requirements.txt changes).
# Called by scripts/test.sh; runs alone too (RabbitMQ and Redis must be up).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

# Test cases per operation and phase (about half a minute of testing on two
# cores), and the seed: a fixed one makes a failure repeatable.
max_examples=${HERALD_CHECK_API_EXAMPLES:-50}
seed=${HERALD_CHECK_API_SEED:-1}

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv=target/api-venv
ensure_venv "$venv" tests/api/requirements.txt

cargo build --locked --quiet --bin herald

# A prefix of its own (test-: scripts/test.sh's expiry policy reaps leftovers).
prefix="test-api-$(date +%s)-$$"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="check-api-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
base="http://127.0.0.1:$port"
# schemathesis keeps its cache (`st replay` reads failures from it) in the
# directory it runs in: this one, with herald's log and the reports.
work=target/check-api
mkdir -p "$work"
log=$work/herald.log

HERALD__AMQP__PREFIX=$prefix \
    HERALD__AMQP__QUEUE_TYPE=classic \
    HERALD__REDIS__PREFIX=$prefix \
    HERALD__API__LISTEN=127.0.0.1:$port \
    HERALD__API__TOKEN=$token \
    HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=true \
    HERALD__DELIVERY__TIMEOUT=2s \
    HERALD__LOG__LEVEL=warn \
    target/debug/herald serve --role api >"$log" 2>&1 &
herald_pid=$!

cleanup() {
    kill "$herald_pid" 2>/dev/null || true
    wait "$herald_pid" 2>/dev/null || true
    if command -v rabbitmqctl >/dev/null 2>&1; then
        "${SUDO[@]}" rabbitmqctl -q list_queues name 2>/dev/null | grep -F "$prefix." |
            xargs -r -n 1 -P 8 "${SUDO[@]}" rabbitmqctl -q delete_queue >/dev/null 2>&1 || true
    fi
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -p "$REDIS_PORT" --scan --pattern "$prefix:*" |
            xargs -r -n 500 redis-cli -p "$REDIS_PORT" del >/dev/null || true
    fi
}
trap cleanup EXIT

deadline=$((SECONDS + 60))
ready() {
    "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$base/readyz" 2>/dev/null
}
until ready; do
    if ! kill -0 "$herald_pid" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "check-api: herald did not get ready; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.5
done

cd "$work"
HERALD_CHECK_SAFE_URL="$base/healthz" SCHEMATHESIS_HOOKS=hooks PYTHONPATH=../../tests/api \
    ../api-venv/bin/schemathesis run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks negative_data_rejection,positive_data_acceptance \
    --max-examples "$max_examples" \
    --workers 2 \
    --seed "$seed" \
    --generation-database none \
    --no-color \
    --report junit \
    --report-junit-path report/junit.xml
