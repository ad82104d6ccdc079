#!/usr/bin/env bash
# herald's speed bar on this machine, in one run:
#   - the ceiling: a bare consume -> POST -> ack loop (same receiver, same
#     producer, same queue type), and the receiver alone (plain POSTs, no broker),
#     which must be well above every rate below or the bench measures the receiver;
#   - herald throughput with one and with ten subscriptions per event, in
#     BENCH_ROUNDS (default 3) rounds interleaved with the ceiling loop: the
#     table shows the medians and each round's figure, and the CPU each side
#     spends per delivery (the loop's process against herald's, from /proc);
#   - publish -> arrival latency at half the one-subscription rate (open loop);
#   - isolation: the same load with a second subscription whose receiver answers
#     after 5 s, the healthy receiver's p99 against its solo p99, at herald's
#     default worker.concurrency and at 16;
#   - a retry storm: every first attempt answered 500, successful deliveries/s;
#   - outcome events: the one-subscription run again with outcomes.enabled and a
#     consumer reading them, against the same run without, back to back;
#   - start-up time, peak RSS, RSS with 1,000 deliveries in flight, and the cost
#     of matching one event against 10,000 subscriptions (plain, and with a
#     filter on data on a tenth of them);
#   - scale-out: one `serve --role api` and 1, 2, 3 `serve --role worker`
#     processes on the same prefixes under the one-subscription load, workers
#     joining and leaving during the runs: deliveries/s against one worker,
#     duplicates, missing, and broker / workers CPU per 1,000 deliveries.
# Prints a table and writes target/bench/results.json.
#
#   scripts/bench.sh [EVENTS]        (default 30000 1 KiB persistent events)
#
# BENCH_ONLY names the phases to run (space- or comma-separated; default all,
# always in this order): ceiling receiver herald latency isolation outcomes
# retry footprint matching scaleout. The table and results.json then hold only
# theirs. latency, isolation and retry load herald at a fraction of the herald
# phase's rate, so they bring that phase along. `BENCH_ONLY=scaleout` runs the
# scale-out proof alone.
# BENCH_ROUNDS (default 3) sets how many times ceiling and herald alternate.
# BENCH_LATENCY_SECS (default 20) sets how long each latency run publishes;
# BENCH_HERALD (default target/release/herald) names the herald binary to
# measure, so an earlier build can be compared with this one on the same day.
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
LATENCY_SECS=${BENCH_LATENCY_SECS:-20}
ROUNDS=${BENCH_ROUNDS:-3}
HERALD=${BENCH_HERALD:-target/release/herald}
SLOW_REPLY=5s
# herald's defaults, spelled out because the isolation figure depends on them:
# the slow receiver answers well inside the timeout, and the cap bounds its share.
DELIVERY_TIMEOUT=15s SUBSCRIPTION_CAP=64
# The retry storm's schedule: short, so retries happen within the run.
RETRY_INITIAL=100ms RETRY_MULTIPLIER=2 RETRY_MAX_DELAY=1s
IN_FLIGHT=1000 HOLD=3s
# The small worker of the isolation figure: a slow endpoint must not take it either.
SMALL_CONCURRENCY=16
# Scale-out: how far into a run (seconds after the first publish) the last worker joins.
SCALE_JOIN_AFTER=1
OUT=target/bench
mkdir -p "$OUT"

PHASES=(ceiling receiver herald latency isolation outcomes retry footprint matching scaleout)
SELECTED=" ${BENCH_ONLY:-${PHASES[*]}} "
SELECTED=${SELECTED//,/ }
for name in $SELECTED; do
    if [[ " ${PHASES[*]} " != *" $name "* ]]; then
        echo "BENCH_ONLY: no phase \"$name\" (phases: ${PHASES[*]})" >&2
        exit 2
    fi
done
# These set their load from herald_1, the herald phase's one-subscription rate.
for name in latency isolation retry; do
    if [[ $SELECTED == *" $name "* ]]; then SELECTED+="herald "; fi
done
selected() { [[ $SELECTED == *" $1 "* ]]; }

ensure_services
cargo build --release --locked --bins --examples

export HERALD__API__TOKEN=bench-token-0123456789
export HERALD__API__LISTEN=127.0.0.1:$PORT
# A fixed prefix: every run reuses the same queues instead of adding more.
export HERALD__AMQP__PREFIX=herald-bench HERALD__REDIS__PREFIX=herald-bench
export HERALD__AMQP__QUEUE_TYPE=$QUEUE_TYPE
export HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HERALD__LOG__LEVEL=warn
# Queue depths every second, so loadgen can tell when herald has drained.
export HERALD__METRICS__QUEUE_REFRESH=1s
# Restarts between phases should not wait out the 30 s default.
export HERALD__WORKER__SHUTDOWN_TIMEOUT=5s

loadgen() {
    target/release/examples/loadgen --token "$HERALD__API__TOKEN" --api "http://127.0.0.1:$PORT" \
        --prefix herald-bench "$@"
}

# Runs loadgen with the given arguments and shows its report; keeps its
# "result: k=v ..." line in RESULT for `field`. (Not `tee /dev/stderr`: when
# stderr is a file, tee reopens it truncated and overwrites what came before.)
RESULT=
measure() {
    local report
    report=$(loadgen "$@")
    echo "$report"
    RESULT=$(sed -n 's/^result: //p' <<<"$report")
    [[ -n $RESULT ]] || { echo "loadgen $* printed no result" >&2; exit 1; }
}
# field KEY: the value of KEY in RESULT.
field() { tr ' ' '\n' <<<"$RESULT" | sed -n "s/^$1=//p"; }

# wait_ready PID PORT LOG: until herald PID answers /readyz on PORT; if it
# exits first, shows its LOG and ends the bench.
wait_ready() {
    until curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; do
        kill -0 "$1" 2>/dev/null || { cat "$3"; exit 1; }
        sleep 0.02
    done
}

# herald runs in the background by PID; a phase that needs other settings
# restarts it: `start_herald PHASE [VAR=value ...]` (log in $OUT/herald-PHASE.log)
# stops the one running, if any, first. Only that PID is ever stopped.
HERALD_PID=
start_herald() {
    local log=$OUT/herald-$1.log
    shift
    stop_herald
    # `env` execs herald, so $! is herald's own PID (the one /proc is read for).
    env "$@" "$HERALD" serve >"$log" 2>&1 &
    HERALD_PID=$!
    wait_ready "$HERALD_PID" "$PORT" "$log"
}
stop_herald() {
    [[ -n $HERALD_PID ]] || return 0
    kill "$HERALD_PID" 2>/dev/null || true
    wait "$HERALD_PID" 2>/dev/null || true
    HERALD_PID=
}

# The scale-out phase's processes (an API and workers), by PID: `spawn LOG PORT
# ROLE` starts `serve --role ROLE` with api.listen on PORT, waits for its
# /readyz and sets SPAWNED. A PID leaves LIVE once reaped, so that a reused PID
# is never signalled.
declare -A LIVE=()
SPAWNED=
spawn() {
    env HERALD__API__LISTEN="127.0.0.1:$2" "$HERALD" serve --role "$3" >"$1" 2>&1 &
    SPAWNED=$!
    LIVE[$SPAWNED]=1
    wait_ready "$SPAWNED" "$2" "$1"
}
# stop_pid PID: SIGTERM to a process `spawn` started, and wait until it is gone.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    unset 'LIVE[$1]'
}
stop_all() {
    stop_herald
    local pid
    for pid in "${!LIVE[@]}"; do stop_pid "$pid"; done
}
trap stop_all EXIT

# Empties every herald-bench queue holding messages (bench data only). A busy
# broker may leave queues out of one listing, so it lists again until none is
# left (at most five rounds).
purge_bench_queues() {
    local round queues
    for round in 1 2 3 4 5; do
        queues=$("${SUDO[@]}" rabbitmqctl -q list_queues name messages | awk '$1 ~ /^herald-bench\./ && $2 > 0 {print $1}')
        [[ -n $queues ]] || return 0
        # </dev/null: rabbitmqctl reads standard input, and would swallow the list.
        while read -r queue; do
            "${SUDO[@]}" rabbitmqctl -q purge_queue "$queue" >/dev/null </dev/null
        done <<<"$queues"
    done
    echo "warning: herald-bench queues still hold messages after $round rounds" >&2
}

# Where the CPU goes, per phase: the broker (whoever listens on the AMQP port;
# only read, never signalled) and herald, in CPU ms per 1,000 deliveries.
BROKER_PID=$(ss -ltnpH "sport = :$RABBITMQ_PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CPU_MARK=
cpu_start() { CPU_MARK="$(cpu_ms "${BROKER_PID:-0}") $(cpu_ms "${HERALD_PID:-0}")"; }
# cpu_per_k DELIVERIES [WORKER_MS]: "broker / worker" CPU ms per 1,000
# deliveries (= us per delivery) since cpu_start; the worker is herald unless
# WORKER_MS, the CPU of another (the ceiling loop's process), is given.
cpu_per_k() {
    read -r b0 h0 <<<"$CPU_MARK"
    local b1 worker
    b1=$(cpu_ms "${BROKER_PID:-0}")
    worker=${2:-$(($(cpu_ms "${HERALD_PID:-0}") - h0))}
    awk -v b=$((b1 - b0)) -v w="$worker" -v n="$1" 'BEGIN {printf "%.0f / %.0f", b * 1000 / n, w * 1000 / n}'
}
# median N...: the median of the numbers (the mean of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m + 0}'
}
# ratio A B: A / B, two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
# spread NAME: "median (round 1, round 2, ...)" of the array NAME.
spread() {
    local -n values=$1
    echo "$(median "${values[@]}") ($(joined ", " "${values[@]}"))"
}

# One ceiling run; adds to CEILING and CPU_CEILING.
CEILING=() CPU_CEILING=()
ceiling_run() {
    echo "== ceiling: consume -> POST -> ack on a $QUEUE_TYPE queue, $EVENTS events"
    cpu_start
    measure --ceiling "$QUEUE_TYPE" --events "$EVENTS"
    CEILING+=("$(field per_s)")
    CPU_CEILING+=("$(cpu_per_k "$EVENTS" "$(field client_cpu_ms)")")
}

# With the herald phase, its rounds run the ceiling between theirs.
phase_ceiling() {
    if selected herald; then return; fi
    local round
    for ((round = 1; round <= ROUNDS; round++)); do ceiling_run; done
    summarise_ceiling
}
summarise_ceiling() {
    ceiling=$(median "${CEILING[@]}")
    ceiling_cpu_client=$(median "${CPU_CEILING[@]##*/ }")
}

phase_receiver() {
    echo "== receiver alone: $EVENTS POSTs, 128 at a time (herald's worker.concurrency)"
    measure --mode direct --events "$EVENTS" --concurrency 128
    receiver=$(field per_s)
}

# Leaves herald running for latency and isolation.
phase_herald() {
    echo "== herald serve"
    local started
    started=$(date +%s%N)
    start_herald main HERALD__DELIVERY__TIMEOUT=$DELIVERY_TIMEOUT \
        HERALD__DELIVERY__MAX_IN_FLIGHT_PER_SUBSCRIPTION=$SUBSCRIPTION_CAP
    ready_ms=$((($(date +%s%N) - started) / 1000000))

    local round
    HERALD_1=() HERALD_10=() CPU_HERALD_1=() OF_CEILING=() TEN_TO_ONE=()
    for ((round = 1; round <= ROUNDS; round++)); do
        if selected ceiling; then ceiling_run; fi
        echo "== herald: $EVENTS events, one subscription each (round $round of $ROUNDS)"
        cpu_start
        measure --events "$EVENTS"
        HERALD_1+=("$(field per_s)")
        CPU_HERALD_1+=("$(cpu_per_k "$EVENTS")")
        echo "== herald: $FANOUT_EVENTS events, ten subscriptions each (round $round of $ROUNDS)"
        measure --events "$FANOUT_EVENTS" --fanout 10
        HERALD_10+=("$(field per_s)")
        TEN_TO_ONE+=("$(ratio "${HERALD_10[-1]}" "${HERALD_1[-1]}")")
        if selected ceiling; then OF_CEILING+=("$((100 * HERALD_1[-1] / CEILING[-1]))"); fi
    done
    if selected ceiling; then summarise_ceiling; fi
    # Whole numbers: later phases load herald at a fraction of herald_1.
    herald_1=$(printf '%.0f' "$(median "${HERALD_1[@]}")")
    herald_10=$(printf '%.0f' "$(median "${HERALD_10[@]}")")
    herald_cpu=$(median "${CPU_HERALD_1[@]##*/ }")
    handoffs=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^herald_fanout_handoffs_total/ {s += $2} END {print s + 0}')
    rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$HERALD_PID/status")
}

phase_latency() {
    # Half the rate herald just sustained: a load it should carry with room to spare.
    latency_rate=$((herald_1 / 2))
    echo "== latency: $latency_rate events/s for ${LATENCY_SECS}s, one subscription"
    measure --mode latency --rate "$latency_rate" --duration "${LATENCY_SECS}s"
    lat_achieved=$(field achieved) lat_p50=$(field p50_ms) lat_p95=$(field p95_ms)
    lat_p99=$(field p99_ms) lat_max=$(field max_ms) lat_missing=$(field missing)
    # The same schedule through the bare loop: what the broker and machine allow.
    echo "== latency, ceiling loop: $latency_rate events/s for ${LATENCY_SECS}s"
    measure --mode latency --ceiling "$QUEUE_TYPE" --rate "$latency_rate" --duration "${LATENCY_SECS}s"
    cl_p50=$(field p50_ms) cl_p95=$(field p95_ms) cl_p99=$(field p99_ms) cl_max=$(field max_ms)
}

# Isolation. Every event also goes to the slow subscription, whose tasks herald
# must keep durably (parked in delay queues) until it can take them: two broker
# writes per event instead of one. Both runs therefore use a quarter of the
# one-subscription rate, keeping the total work at half, and differ only in the
# slow subscription. `isolation LABEL` sets ISO_P99, ISO_SOLO_P99, ISO_RATIO,
# ISO_MISSING and ISO_SLOW for the herald running now; then herald stops and the
# slow subscription's backlog (parked until places free up: hours at this rate)
# is purged, so that it cannot disturb what comes next.
isolation() {
    echo "== isolation ($1), solo: $iso_rate events/s for ${LATENCY_SECS}s, one subscription"
    measure --mode latency --rate "$iso_rate" --duration "${LATENCY_SECS}s"
    ISO_SOLO_P99=$(field p99_ms)
    echo "== isolation ($1): the same load, every event also to a receiver answering after $SLOW_REPLY"
    measure --mode latency --rate "$iso_rate" --duration "${LATENCY_SECS}s" --slow-receiver "$SLOW_REPLY"
    ISO_P99=$(field p99_ms) ISO_MISSING=$(field missing) ISO_SLOW=$(field slow_answered)
    ISO_RATIO=$(ratio "$ISO_P99" "$ISO_SOLO_P99")
    stop_herald
    purge_bench_queues
}
# The first run uses the herald the herald phase started.
phase_isolation() {
    iso_rate=$((herald_1 / 4))
    isolation "worker.concurrency default"
    iso_p99=$ISO_P99 iso_solo_p99=$ISO_SOLO_P99 iso_ratio=$ISO_RATIO iso_missing=$ISO_MISSING iso_slow=$ISO_SLOW
    start_herald isolation-16 HERALD__WORKER__CONCURRENCY=$SMALL_CONCURRENCY \
        HERALD__DELIVERY__TIMEOUT=$DELIVERY_TIMEOUT HERALD__DELIVERY__MAX_IN_FLIGHT_PER_SUBSCRIPTION=$SUBSCRIPTION_CAP
    isolation "worker.concurrency $SMALL_CONCURRENCY"
    iso16_p99=$ISO_P99 iso16_solo_p99=$ISO_SOLO_P99 iso16_ratio=$ISO_RATIO iso16_missing=$ISO_MISSING iso16_slow=$ISO_SLOW
}

# Outcome events at full load: the same one-subscription run without and with
# them, back to back, so the two see the same machine.
phase_outcomes() {
    echo "== outcome events: $EVENTS events, one subscription, outcomes off"
    start_herald outcomes-off
    cpu_start
    measure --events "$EVENTS"
    outcomes_off=$(field per_s)
    cpu_outcomes_off=$(cpu_per_k "$EVENTS")
    echo "== outcome events: the same with outcomes.enabled and a consumer reading them"
    start_herald outcomes-on HERALD__OUTCOMES__ENABLED=true
    cpu_start
    measure --events "$EVENTS" --outcomes
    outcomes_on=$(field per_s) outcomes_read=$(field outcomes)
    cpu_outcomes_on=$(cpu_per_k "$EVENTS")
    outcomes_dropped=$(curl -fsS "http://127.0.0.1:$PORT/metrics" |
        awk '/^herald_outcome_events_total\{result="(dropped|failed)"\}/ {s += $2} END {print s + 0}')
    outcomes_percent=$((100 * outcomes_on / outcomes_off))
    stop_herald
}

phase_retry() {
    echo "== retry storm: $EVENTS events, every first attempt answered 500"
    # Another schedule adds its delay queues (named by TTL) under the same prefix.
    start_herald retry HERALD__DELIVERY__RETRY_INITIAL=$RETRY_INITIAL \
        HERALD__DELIVERY__RETRY_MULTIPLIER=$RETRY_MULTIPLIER HERALD__DELIVERY__RETRY_MAX_DELAY=$RETRY_MAX_DELAY
    cpu_start
    measure --events "$EVENTS" --fail-first
    storm=$(field per_s)
    cpu_storm=$(cpu_per_k "$EVENTS")
    storm_percent=$((100 * storm / herald_1))
    stop_herald
}

phase_footprint() {
    echo "== footprint: $IN_FLIGHT deliveries held $HOLD at the receiver"
    # Room for every delivery at once. The receiver is slow, so isolation binds: one
    # subscription holds at most a quarter of the slots and all slow ones together
    # half. Four subscriptions, and twice the slots, hold them all.
    start_herald footprint HERALD__WORKER__CONCURRENCY=$((2 * IN_FLIGHT)) HERALD__AMQP__PREFETCH=$IN_FLIGHT \
        HERALD__DELIVERY__MAX_IN_FLIGHT_PER_SUBSCRIPTION=$IN_FLIGHT
    measure --mode footprint --events $((IN_FLIGHT / 4)) --fanout 4 --hold "$HOLD" --pid "$HERALD_PID"
    fp_rss_kib=$(field rss_kib) fp_open=$(field receiver_open) fp_herald=$(field herald_in_flight)
    stop_herald
}

phase_matching() {
    echo "== matching: one event against 10,000 subscriptions, plain and with filters on a tenth"
    local matching plain filtered
    matching=$(target/release/examples/matchbench 10000)
    echo "$matching"
    plain=$(grep -v 'with a filter' <<<"$matching")
    filtered=$(grep 'with a filter' <<<"$matching")
    match_median=$(sed -n 's/.*median \([0-9.]*\) us.*/\1/p' <<<"$plain")
    match_p99=$(sed -n 's/.*p99 \([0-9.]*\) us.*/\1/p' <<<"$plain")
    match_filtered_median=$(sed -n 's/.*median \([0-9.]*\) us.*/\1/p' <<<"$filtered")
    match_filtered_p99=$(sed -n 's/.*p99 \([0-9.]*\) us.*/\1/p' <<<"$filtered")
}

# Scale-out. One `--role api` on $PORT (loadgen creates its subscription there)
# and `--role worker` processes, all on the same prefixes, the one-subscription
# load of the herald phase, run with at most 1, 2 and 3 workers. A run for N
# starts with N - 1 workers (1 for N = 1); the Nth joins SCALE_JOIN_AFTER (1 s)
# after the first publish; at N = 3 the first worker gets SIGTERM once half the
# events have arrived (it drains its in-flight deliveries, and what it had not
# started goes back to the queue for the others). loadgen counts each event's
# arrivals: duplicates, and missing if deliveries stall. Worker slot i serves
# /readyz and /metrics on PORT + i.
SO_PER_S=() SO_RATIO=() SO_DELIVERIES=() SO_DUP=() SO_MISSING=() SO_CPU_BROKER=() SO_CPU_WORKERS=() SO_SCHEDULE=()
WORKER_PID=() WORKER_CPU0=()
WORKERS_CPU_MS=0

# start_worker RUN SLOT: a worker in SLOT, its CPU counted from now (or from
# the first publish, if it starts before).
start_worker() {
    spawn "$OUT/herald-scaleout-$1-worker-$2.log" $((PORT + $2)) worker
    WORKER_PID[$2]=$SPAWNED
    WORKER_CPU0[$2]=$(cpu_ms "$SPAWNED")
}
# leave SLOT: SIGTERM to the worker in SLOT mid-run, and the CPU it used,
# draining included, added to WORKERS_CPU_MS. /proc/<pid> goes with the
# process, so its CPU is read until then and the last reading stands (at most
# 20 ms short).
leave() {
    local pid=${WORKER_PID[$1]} last=0 now
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        now=$(cpu_ms "$pid")
        if ((now > last)); then last=$now; fi
        sleep 0.02
    done
    stop_pid "$pid"
    unset 'WORKER_PID[$1]'
    WORKERS_CPU_MS=$((WORKERS_CPU_MS + last - WORKER_CPU0[$1]))
}
# wait_for FILE PATTERN PID: until a line of FILE matches PATTERN; false if
# PID (the loadgen writing FILE) ends without printing one.
wait_for() {
    until grep -q "$2" "$1"; do
        kill -0 "$3" 2>/dev/null || { grep -q "$2" "$1"; return; }
        sleep 0.02
    done
}
# delivering FILE PID: loadgen PID still waits for events to arrive. A short
# run (a small EVENTS) may be over before a worker joins or leaves.
delivering() { kill -0 "$2" 2>/dev/null && ! grep -q '^progress: all arrived' "$1"; }
# seconds_since NS: seconds from NS (date +%s%N) to now, one decimal.
seconds_since() { awk -v t0="$1" -v t1="$(date +%s%N)" 'BEGIN {printf "%.1f", (t1 - t0) / 1e9}'; }

# scaleout_run N: the run with at most N workers; sets SO_*[N]. CPU is counted
# from the first publish until every event has arrived.
scaleout_run() {
    local n=$1 first report=$OUT/scaleout-$1.txt slot loadgen_pid t0 broker0 broker_ms schedule deliveries
    first=$((n > 1 ? n - 1 : 1))
    WORKER_PID=() WORKER_CPU0=() WORKERS_CPU_MS=0
    for ((slot = 1; slot <= first; slot++)); do start_worker "$n" "$slot"; done
    schedule="$first from the start"
    echo "== scale-out: $EVENTS events, one subscription, up to $n worker(s) and an api"
    # Made here, so that wait_for never looks before loadgen's redirection has.
    : >"$report"
    loadgen --mode scaleout --events "$EVENTS" >"$report" &
    loadgen_pid=$!
    wait_for "$report" '^progress: publishing' "$loadgen_pid" || true
    t0=$(date +%s%N) broker0=$(cpu_ms "${BROKER_PID:-0}")
    for slot in "${!WORKER_PID[@]}"; do WORKER_CPU0[slot]=$(cpu_ms "${WORKER_PID[$slot]}"); done
    if ((n > first)); then
        sleep "$SCALE_JOIN_AFTER"
        if delivering "$report" "$loadgen_pid"; then
            start_worker "$n" "$n"
            schedule+=", worker $n joined at $(seconds_since "$t0") s"
        fi
    fi
    if ((n > 2)) && wait_for "$report" '^progress: half' "$loadgen_pid" && delivering "$report" "$loadgen_pid"; then
        schedule+=", worker 1 sent SIGTERM at $(seconds_since "$t0") s"
        leave 1
    fi
    wait_for "$report" '^progress: all arrived' "$loadgen_pid" || true
    broker_ms=$(($(cpu_ms "${BROKER_PID:-0}") - broker0))
    for slot in "${!WORKER_PID[@]}"; do
        WORKERS_CPU_MS=$((WORKERS_CPU_MS + $(cpu_ms "${WORKER_PID[$slot]}") - WORKER_CPU0[slot]))
    done
    if ! wait "$loadgen_pid"; then
        cat "$report"
        echo "loadgen --mode scaleout failed" >&2
        exit 1
    fi
    for slot in "${!WORKER_PID[@]}"; do stop_pid "${WORKER_PID[$slot]}"; done
    grep -v '^progress:' "$report"
    echo "  workers: $schedule"
    RESULT=$(sed -n 's/^result: //p' "$report")
    SO_PER_S[n]=$(field per_s) SO_DELIVERIES[n]=$(field deliveries)
    SO_DUP[n]=$(field duplicates) SO_MISSING[n]=$(field missing) SO_SCHEDULE[n]=$schedule
    deliveries=$((SO_DELIVERIES[n] > 0 ? SO_DELIVERIES[n] : 1))
    SO_CPU_BROKER[n]=$((broker_ms * 1000 / deliveries)) SO_CPU_WORKERS[n]=$((WORKERS_CPU_MS * 1000 / deliveries))
    SO_RATIO[n]=$(ratio "${SO_PER_S[n]}" "${SO_PER_S[1]}")
}

phase_scaleout() {
    # The API port is the api process's now, and a herald left running would be
    # one more worker.
    stop_herald
    purge_bench_queues
    spawn "$OUT/herald-scaleout-api.log" "$PORT" api
    local api=$SPAWNED n
    for n in 1 2 3; do
        scaleout_run "$n"
        # Nothing of this run may be delivered in the next.
        purge_bench_queues
    done
    stop_pid "$api"
}

# What an aborted run left behind must not be delivered during this one.
purge_bench_queues

RAN=()
for phase in "${PHASES[@]}"; do
    if selected "$phase"; then
        "phase_$phase"
        RAN+=("$phase")
    fi
done

# joined SEP WORD...: the words separated by SEP.
joined() {
    local sep=$1 out=$2 word
    shift 2
    for word in "$@"; do out+=$sep$word; done
    echo "$out"
}
row() { echo "| $1 | $2 | ${3:-} |"; }

# The rows of the phases that ran, in the usual order. One row compares the CPU
# of three phases: it names those that ran.
print_table() {
    echo
    echo "| measure                                   | value        | target        |"
    echo "|-------------------------------------------|--------------|---------------|"
    if selected ceiling; then
        row "ceiling ($QUEUE_TYPE), deliveries/s, median (each round)" "$(spread CEILING)"
    fi
    if selected receiver; then
        row "receiver alone (POSTs, 128 at a time), requests/s" "$receiver" "well above every rate here"
    fi
    if selected herald; then
        row "herald, 1 subscription, deliveries/s" "$(spread HERALD_1)"
        if selected ceiling; then
            row "herald / the ceiling in the same round, %" "$(spread OF_CEILING)" ">= 100 median, no round < 90"
        fi
        row "herald, 10 subscriptions, deliveries/s" "$(spread HERALD_10)"
        row "10 subscriptions / 1, deliveries/s" "$(spread TEN_TO_ONE)" ">= 2"
        row "first attempts handed to <p>.deliveries" "$handoffs"
    fi
    if selected latency; then
        row "latency at $latency_rate/s (achieved $lat_achieved/s) for ${LATENCY_SECS}s, p50 / p95 / p99 / max" \
            "$lat_p50 / $lat_p95 / $lat_p99 / $lat_max ms ($lat_missing missing)" "p99 <= 25 ms"
        row "the ceiling loop at the same rate, p50 / p95 / p99 / max" "$cl_p50 / $cl_p95 / $cl_p99 / $cl_max ms"
        row "p99 at that rate, herald / the ceiling loop" "$(ratio "$lat_p99" "$cl_p99")" "<= 2"
    fi
    if selected isolation; then
        row "isolation at $iso_rate/s: healthy p99 with every event also to a $SLOW_REPLY receiver (timeout $DELIVERY_TIMEOUT, cap $SUBSCRIPTION_CAP) / solo p99" \
            "$iso_p99 / $iso_solo_p99 ms = $iso_ratio ($iso_missing missing; the slow receiver answered $iso_slow)" "<= 1.5"
        row "the same at worker.concurrency $SMALL_CONCURRENCY" \
            "$iso16_p99 / $iso16_solo_p99 ms = $iso16_ratio ($iso16_missing missing; the slow receiver answered $iso16_slow)" "<= 1.5"
    fi
    if selected outcomes; then
        row "outcome events: 1 subscription with / without, deliveries/s" \
            "$outcomes_on / $outcomes_off ($outcomes_percent %; read $outcomes_read, dropped or failed $outcomes_dropped)" ">= 85 %"
        row "CPU ms per 1,000 deliveries, broker / herald: outcomes off; on" "$cpu_outcomes_off; $cpu_outcomes_on"
    fi
    if selected retry; then
        row "retry storm (first attempts 500; retry $RETRY_INITIAL x$RETRY_MULTIPLIER <= $RETRY_MAX_DELAY), successful deliveries/s" \
            "$storm ($storm_percent % of 1 subscription)" ">= 45 %"
    fi
    if selected ceiling && selected herald; then
        row "CPU us per delivery, the worker's process: the ceiling loop / herald (medians)" \
            "$ceiling_cpu_client / $herald_cpu" "herald <= 35 and <= the loop"
    fi
    local names=() values=()
    if selected ceiling; then names+=("ceiling (loop)") values+=("$(joined ", " "${CPU_CEILING[@]}")"); fi
    if selected herald; then names+=("herald 1 subscription") values+=("$(joined ", " "${CPU_HERALD_1[@]}")"); fi
    if selected retry; then names+=("retry storm") values+=("$cpu_storm"); fi
    if ((${#names[@]} > 0)); then
        row "CPU us per delivery (ms per 1,000), broker / worker, each round: $(joined "; " "${names[@]}")" \
            "$(joined "; " "${values[@]}")"
    fi
    if selected herald; then
        row "start to /readyz 200" "${ready_ms} ms" "<= 1000 ms"
        row "herald peak RSS" "$((rss_kib / 1024)) MiB" "<= 64 MiB"
    fi
    if selected footprint; then
        row "herald RSS, $IN_FLIGHT deliveries in flight (held $HOLD)" \
            "$((fp_rss_kib / 1024)) MiB (in flight: herald $fp_herald, receiver $fp_open)" "<= 32 MiB"
    fi
    if selected matching; then
        row "matching, 10,000 subscriptions, median/p99" "$match_median / $match_p99 us" "<= 50 us median"
        row "the same, 1,000 of them with a filter on data" "$match_filtered_median / $match_filtered_p99 us" "<= 50 us median"
    fi
    if selected scaleout; then
        row "scale-out: 1 / 2 / 3 workers (+1 api; the last joins at ${SCALE_JOIN_AFTER} s, at 3 the first gets SIGTERM half-way), deliveries/s (x of 1 worker), duplicates, missing" \
            "${SO_PER_S[1]} / ${SO_PER_S[2]} (${SO_RATIO[2]}x) / ${SO_PER_S[3]} (${SO_RATIO[3]}x); duplicates ${SO_DUP[1]} / ${SO_DUP[2]} / ${SO_DUP[3]}; missing ${SO_MISSING[1]} / ${SO_MISSING[2]} / ${SO_MISSING[3]}" \
            "missing 0"
        row "CPU ms per 1,000 deliveries, broker / workers: 1; 2; 3" \
            "${SO_CPU_BROKER[1]} / ${SO_CPU_WORKERS[1]}; ${SO_CPU_BROKER[2]} / ${SO_CPU_WORKERS[2]}; ${SO_CPU_BROKER[3]} / ${SO_CPU_WORKERS[3]}"
    fi
}

# The figures of the phases that ran, as results.json.
print_results() {
    local parts=("\"queue_type\": \"$QUEUE_TYPE\", \"events\": $EVENTS, \"phases\": \"${RAN[*]}\"")
    if selected ceiling; then
        parts+=("\"ceiling_per_s\": $ceiling, \"ceiling_rounds_per_s\": [$(joined ", " "${CEILING[@]}")],
  \"ceiling_cpu_us_per_delivery\": $ceiling_cpu_client")
    fi
    if selected receiver; then parts+=("\"receiver_per_s\": $receiver"); fi
    if selected herald; then
        parts+=("\"rounds\": $ROUNDS, \"herald_1_per_s\": $herald_1, \"herald_1_rounds_per_s\": [$(joined ", " "${HERALD_1[@]}")],
  \"herald_cpu_us_per_delivery\": $herald_cpu")
        if selected ceiling; then
            parts+=("\"herald_percent_of_ceiling\": $(median "${OF_CEILING[@]}"), \"herald_percent_of_ceiling_rounds\": [$(joined ", " "${OF_CEILING[@]}")]")
        fi
        parts+=("\"herald_10_per_s\": $herald_10, \"herald_10_rounds_per_s\": [$(joined ", " "${HERALD_10[@]}")],
  \"ten_to_one\": $(median "${TEN_TO_ONE[@]}"), \"fanout_handoffs\": $handoffs")
    fi
    if selected latency; then
        parts+=("\"latency\": {\"rate_per_s\": $latency_rate, \"achieved_per_s\": $lat_achieved, \"seconds\": $LATENCY_SECS,
  \"p50_ms\": $lat_p50, \"p95_ms\": $lat_p95, \"p99_ms\": $lat_p99, \"max_ms\": $lat_max, \"missing\": $lat_missing,
  \"ceiling_p50_ms\": $cl_p50, \"ceiling_p95_ms\": $cl_p95, \"ceiling_p99_ms\": $cl_p99, \"ceiling_max_ms\": $cl_max}")
    fi
    if selected isolation; then
        parts+=("\"isolation\": {\"rate_per_s\": $iso_rate, \"slow_reply\": \"$SLOW_REPLY\", \"healthy_p99_ms\": $iso_p99, \"solo_p99_ms\": $iso_solo_p99,
  \"ratio\": $iso_ratio, \"missing\": $iso_missing, \"slow_answered\": $iso_slow,
  \"delivery_timeout\": \"$DELIVERY_TIMEOUT\", \"max_in_flight_per_subscription\": $SUBSCRIPTION_CAP,
  \"small_worker\": {\"concurrency\": $SMALL_CONCURRENCY, \"healthy_p99_ms\": $iso16_p99, \"solo_p99_ms\": $iso16_solo_p99,
   \"ratio\": $iso16_ratio, \"missing\": $iso16_missing, \"slow_answered\": $iso16_slow}}")
    fi
    if selected outcomes; then
        parts+=("\"outcomes\": {\"on_per_s\": $outcomes_on, \"off_per_s\": $outcomes_off, \"percent\": $outcomes_percent,
  \"read\": $outcomes_read, \"dropped_or_failed\": $outcomes_dropped,
  \"cpu_ms_per_1000_broker_slash_herald_off\": \"$cpu_outcomes_off\", \"cpu_ms_per_1000_broker_slash_herald_on\": \"$cpu_outcomes_on\"}")
    fi
    if selected retry; then
        parts+=("\"retry_storm\": {\"per_s\": $storm, \"percent_of_herald_1\": $storm_percent,
  \"retry_initial\": \"$RETRY_INITIAL\", \"retry_multiplier\": $RETRY_MULTIPLIER, \"retry_max_delay\": \"$RETRY_MAX_DELAY\"}")
    fi
    local cpu=()
    if selected ceiling; then cpu+=("\"ceiling\": \"$(joined "; " "${CPU_CEILING[@]}")\""); fi
    if selected herald; then cpu+=("\"herald_1\": \"$(joined "; " "${CPU_HERALD_1[@]}")\""); fi
    if selected retry; then cpu+=("\"retry_storm\": \"$cpu_storm\""); fi
    if ((${#cpu[@]} > 0)); then
        parts+=("\"cpu_ms_per_1000_broker_slash_herald\": {$(joined ", " "${cpu[@]}")}")
    fi
    if selected herald; then parts+=("\"ready_ms\": $ready_ms, \"peak_rss_kib\": $rss_kib"); fi
    if selected footprint; then
        parts+=("\"in_flight\": {\"deliveries\": $IN_FLIGHT, \"hold\": \"$HOLD\", \"rss_kib\": $fp_rss_kib,
  \"herald_in_flight\": $fp_herald, \"receiver_open\": $fp_open}")
    fi
    if selected matching; then
        parts+=("\"matching_median_us\": $match_median, \"matching_p99_us\": $match_p99,
  \"matching_filtered_median_us\": $match_filtered_median, \"matching_filtered_p99_us\": $match_filtered_p99")
    fi
    if selected scaleout; then
        local runs=() n
        for n in 1 2 3; do
            runs+=("{\"workers\": $n, \"schedule\": \"${SO_SCHEDULE[n]}\", \"per_s\": ${SO_PER_S[n]}, \"ratio_to_1_worker\": ${SO_RATIO[n]},
   \"deliveries\": ${SO_DELIVERIES[n]}, \"duplicates\": ${SO_DUP[n]}, \"missing\": ${SO_MISSING[n]},
   \"cpu_ms_per_1000_broker\": ${SO_CPU_BROKER[n]}, \"cpu_ms_per_1000_workers\": ${SO_CPU_WORKERS[n]}}")
        done
        parts+=("\"scaleout\": {\"events\": $EVENTS, \"join_after_s\": $SCALE_JOIN_AFTER, \"runs\": [
  $(joined $',\n  ' "${runs[@]}")]}")
    fi
    echo "{$(joined $',\n ' "${parts[@]}")}"
}

print_table
print_results >"$OUT/results.json"
echo "results: $OUT/results.json"
