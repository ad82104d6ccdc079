#!/usr/bin/env bash
# The demo: RabbitMQ and Redis, a release build of herald (API + worker), a
# subscription "demo" that delivers every event to `herald sink`, and a few
# sample events published over AMQP and over the HTTP API. The sink prints each
# delivery and "signature ok". Ctrl-C stops what this script started.
#
# Environment (all optional):
#   HERALD__API__LISTEN    herald's API address      (default 127.0.0.1:8080)
#   SINK_LISTEN            the sink's address        (default 127.0.0.1:9000)
#   HERALD__API__TOKEN     the API bearer token      (default: a random one)
#   HERALD__AMQP__PREFIX, HERALD__REDIS__PREFIX       (default herald-demo)
#   HERALD__AMQP__QUEUE_TYPE                          (default classic: one dev broker)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

step() {
    printf '\n==> %s\n' "$*"
}

random_token() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex 16
    else
        od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
    fi
}

# host:port or [v6]:port -> "host port", with a wildcard host probed on loopback.
split_addr() {
    local addr=$1 host port
    port=${addr##*:}
    host=${addr%:*}
    host=${host#[}
    host=${host%]}
    case $host in
        0.0.0.0) host=127.0.0.1 ;;
        ::) host=::1 ;;
    esac
    echo "$host $port"
}

export HERALD__API__LISTEN=${HERALD__API__LISTEN:-127.0.0.1:8080}
export HERALD__API__TOKEN=${HERALD__API__TOKEN:-$(random_token)}
export HERALD__AMQP__QUEUE_TYPE=${HERALD__AMQP__QUEUE_TYPE:-classic}
export HERALD__AMQP__PREFIX=${HERALD__AMQP__PREFIX:-herald-demo}
export HERALD__REDIS__PREFIX=${HERALD__REDIS__PREFIX:-herald-demo}
# The demo's sink listens on loopback, which the SSRF guard refuses by default.
export HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=${HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS:-true}
SINK_LISTEN=${SINK_LISTEN:-127.0.0.1:9000}

API="http://$HERALD__API__LISTEN"
TOKEN=$HERALD__API__TOKEN
HERALD=target/release/herald
LOG_DIR=target/demo
LOG=$LOG_DIR/herald.log
HERALD_PID=""
SINK_PID=""

# Stops what this script started, by PID: SIGTERM (herald drains in-flight
# attempts, worker.shutdown_timeout), then SIGKILL if one is still running after 40 s.
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pids=()
    for pid in $HERALD_PID $SINK_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    if ((${#pids[@]} > 0)); then
        echo
        echo "stopping herald and the sink (pids ${pids[*]})"
        local deadline=$((SECONDS + 40))
        for pid in "${pids[@]}"; do
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

read -r API_HOST API_PORT <<<"$(split_addr "$HERALD__API__LISTEN")"
read -r SINK_HOST SINK_PORT <<<"$(split_addr "$SINK_LISTEN")"
# A herald already on the API port would answer /readyz for us: refuse instead.
require_free() {
    local host=$1 port=$2 var=$3
    if port_open "$port" "$host"; then
        echo "run.sh: something already listens on $host port $port; stop it or set $var" >&2
        exit 1
    fi
}
require_free "$API_HOST" "$API_PORT" HERALD__API__LISTEN
require_free "$SINK_HOST" "$SINK_PORT" SINK_LISTEN

step "services: RabbitMQ and Redis"
ensure_services

step "cargo build --release"
cargo build --release

step "herald serve (log: $LOG)"
mkdir -p "$LOG_DIR"
"$HERALD" serve >"$LOG" 2>&1 &
HERALD_PID=$!
deadline=$((SECONDS + 60))
until curl -fsS "$API/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$HERALD_PID" 2>/dev/null || ((SECONDS >= deadline)); then
        if kill -0 "$HERALD_PID" 2>/dev/null; then
            echo "run.sh: herald was not ready within 60s; $API/readyz says:" >&2
            curl -sS "$API/readyz" >&2 || true
            echo >&2
        else
            echo "run.sh: herald exited during start-up" >&2
        fi
        echo "--- last lines of $LOG ---" >&2
        tail -n 40 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "herald is ready at $API"

step "subscription \"demo\" -> http://$SINK_LISTEN/hooks"
curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    "$API/v1/subscriptions/demo" \
    -d "{\"url\":\"http://$SINK_LISTEN/hooks\",\"events\":[\"*\"],\"description\":\"herald sink demo\"}"
echo
secret_json=$(curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$API/v1/subscriptions/demo/secret")
if command -v python3 >/dev/null 2>&1; then
    SECRET=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])' <<<"$secret_json")
else
    SECRET=$(sed -n 's/.*"secret" *: *"\(whsec_[^"]*\)".*/\1/p' <<<"$secret_json")
fi
if [[ $SECRET != whsec_* ]]; then
    echo "run.sh: could not read the subscription's secret from: $secret_json" >&2
    exit 1
fi

step "herald sink on $SINK_LISTEN (it prints each delivery below)"
"$HERALD" sink --listen "$SINK_LISTEN" --secret "$SECRET" &
SINK_PID=$!
deadline=$((SECONDS + 15))
until port_open "$SINK_PORT" "$SINK_HOST"; do
    if ! kill -0 "$SINK_PID" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "run.sh: the sink did not start on $SINK_LISTEN" >&2
        exit 1
    fi
    sleep 0.2
done

step "publishing sample events"
echo "over AMQP (herald publish prints the event id):"
"$HERALD" publish --type deployment.failed --label env=prod --label project=api \
    --data '{"service":"api","version":"1.4.2","reason":"readiness probe failed"}'
"$HERALD" publish --type testworkflow.end.success --label env=staging --label test-type=e2e \
    --data '{"workflow":"checkout-e2e","duration_s":214}'
echo "over HTTP (POST /v1/events, a batch of two):"
curl -sS --fail-with-body -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    "$API/v1/events" -d '[
      {"type":"deployment.succeeded","source":"run.sh","labels":{"env":"prod","project":"api"},"data":{"service":"api","version":"1.4.3"}},
      {"type":"deployment.started","source":"run.sh","labels":{"env":"prod","project":"web"},"data":{"service":"web","version":"2.0.0"}}
    ]'
echo
# Let the deliveries print before the instructions.
sleep 2

cat <<EOF

==> herald demo is running
  API          $API    (token: $TOKEN)
  metrics      $API/metrics
  readiness    $API/readyz
  sink         http://$SINK_LISTEN/hooks   (prints each delivery and "signature ok")
  herald log   $LOG
  prefixes     amqp $HERALD__AMQP__PREFIX, redis $HERALD__REDIS__PREFIX

Publish more from another terminal:
  HERALD__AMQP__PREFIX=$HERALD__AMQP__PREFIX HERALD__AMQP__QUEUE_TYPE=$HERALD__AMQP__QUEUE_TYPE \\
    $HERALD publish --type deployment.failed --label env=prod --data '{"service":"web"}'
  curl -X POST -H 'Authorization: Bearer $TOKEN' -H 'content-type: application/json' \\
    $API/v1/events -d '{"type":"deployment.succeeded","labels":{"env":"prod"}}'
  curl -H 'Authorization: Bearer $TOKEN' $API/v1/subscriptions

Ctrl-C to stop.
EOF

# Runs until Ctrl-C (the trap stops both processes) or until herald exits.
set +e
wait "$HERALD_PID"
status=$?
set -e
echo "herald exited with status $status; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
