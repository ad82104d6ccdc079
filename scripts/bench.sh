#!/usr/bin/env bash
# Throughput on this machine: the ceiling (a bare consume -> POST -> ack loop,
# same receiver, same producer, same queue type) next to herald end to end,
# with one and with ten subscriptions per event, plus herald's start-up time,
# peak RSS and the cost of matching one event against 10,000 subscriptions. Prints a table and writes target/bench/results.json.
#
#   scripts/bench.sh [EVENTS]        (default 30000 1 KiB persistent events)
#
# Broker, receiver, producer and herald share the machine's cores, as in the
# speed bar. Compare ratios within one run: these machines are noisy.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

EVENTS=${1:-30000}
FANOUT_EVENTS=$((EVENTS / 10))
QUEUE_TYPE=${BENCH_QUEUE_TYPE:-quorum}
PORT=${BENCH_API_PORT:-18080}
OUT=target/bench
mkdir -p "$OUT"

ensure_services
cargo build --release --locked --bins --examples

export HERALD__API__TOKEN=bench-token-0123456789
export HERALD__API__LISTEN=127.0.0.1:$PORT
# A fixed prefix: every run reuses the same queues instead of adding more.
export HERALD__AMQP__PREFIX=herald-bench HERALD__REDIS__PREFIX=herald-bench
export HERALD__AMQP__QUEUE_TYPE=$QUEUE_TYPE
export HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HERALD__LOG__LEVEL=warn

loadgen() {
    target/release/examples/loadgen --token "$HERALD__API__TOKEN" --api "http://127.0.0.1:$PORT" \
        --prefix herald-bench "$@"
}

# deliveries/s from loadgen's second line: "  3.57s: 8401 deliveries/s (...)"
rate() { sed -n 's/.*s: \([0-9]*\) deliveries\/s.*/\1/p'; }

echo "== ceiling: consume -> POST -> ack on a $QUEUE_TYPE queue, $EVENTS events"
ceiling=$(loadgen --ceiling "$QUEUE_TYPE" --events "$EVENTS" | tee /dev/stderr | rate)

echo "== herald serve"
started=$(date +%s%N)
target/release/herald serve >"$OUT/herald.log" 2>&1 &
HERALD_PID=$!
trap 'kill "$HERALD_PID" 2>/dev/null || true; wait "$HERALD_PID" 2>/dev/null || true' EXIT
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
    kill -0 "$HERALD_PID" || { cat "$OUT/herald.log"; exit 1; }
    sleep 0.02
done
ready_ms=$((($(date +%s%N) - started) / 1000000))

echo "== herald: $EVENTS events, one subscription each"
herald_1=$(loadgen --events "$EVENTS" | tee /dev/stderr | rate)
echo "== herald: $FANOUT_EVENTS events, ten subscriptions each"
herald_10=$(loadgen --events "$FANOUT_EVENTS" --fanout 10 | tee /dev/stderr | rate)
handoffs=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^herald_fanout_handoffs_total/ {s += $2} END {print s + 0}')
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$HERALD_PID/status")

echo "== matching: one event against 10,000 subscriptions"
matching=$(target/release/examples/matchbench 10000 | tee /dev/stderr)
match_median=$(sed -n 's/.*median \([0-9.]*\) us.*/\1/p' <<<"$matching")
match_p99=$(sed -n 's/.*p99 \([0-9.]*\) us.*/\1/p' <<<"$matching")

percent=$((100 * herald_1 / ceiling))
cat <<TABLE

| measure                                   | value        | target        |
|-------------------------------------------|--------------|---------------|
| ceiling ($QUEUE_TYPE), deliveries/s        | $ceiling |               |
| herald, 1 subscription, deliveries/s      | $herald_1 ($percent %) | >= 85 % of ceiling |
| herald, 10 subscriptions, deliveries/s    | $herald_10 |               |
| first attempts handed to <p>.deliveries   | $handoffs |               |
| start to /readyz 200                      | ${ready_ms} ms | <= 1000 ms    |
| herald peak RSS                           | $((rss_kib / 1024)) MiB | <= 64 MiB |
| matching, 10,000 subscriptions, median/p99 | $match_median / $match_p99 us | <= 50 us median |
TABLE

cat >"$OUT/results.json" <<JSON
{"queue_type": "$QUEUE_TYPE", "events": $EVENTS,
 "ceiling_per_s": $ceiling, "herald_1_per_s": $herald_1, "herald_percent_of_ceiling": $percent,
 "herald_10_per_s": $herald_10, "fanout_handoffs": $handoffs,
 "ready_ms": $ready_ms, "peak_rss_kib": $rss_kib,
 "matching_median_us": $match_median, "matching_p99_us": $match_p99}
JSON
echo "results: $OUT/results.json"
