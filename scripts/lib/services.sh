# shellcheck shell=bash
# RabbitMQ and Redis for herald's tests and demo: `ensure_services` leaves both
# answering on 127.0.0.1 (5672, 6379), installing them from the distribution's
# packages and starting them when they are not. Sourced by scripts/test.sh and
# scripts/run.sh. It never stops or kills anything.

RABBITMQ_PORT=5672
REDIS_PORT=6379

# Root runs everything as is; anyone else goes through sudo.
if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
else
    SUDO=(sudo)
fi

services_log() {
    echo "services: $*" >&2
}

# True when something accepts TCP connections on PORT (at HOST, default 127.0.0.1).
port_open() {
    local port=$1 host=${2:-127.0.0.1}
    if command -v nc >/dev/null 2>&1; then
        nc -z -w 2 "$host" "$port" >/dev/null 2>&1
    else
        # shellcheck disable=SC2016 # expanded by the inner bash
        timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" >/dev/null 2>&1
    fi
}

# Installs the given Debian packages (once per call, with one apt-get update).
install_packages() {
    services_log "installing $* from the distribution's packages"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

start_redis() {
    services_log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    "${SUDO[@]}" mkdir -p /var/lib/redis /var/log/redis
    # No persistence: test and demo data are throwaway.
    "${SUDO[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    local deadline=$((SECONDS + 30))
    until port_open "$REDIS_PORT" && redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
        if ((SECONDS >= deadline)); then
            services_log "redis did not come up within 30s; /var/log/redis/ci.log says:"
            "${SUDO[@]}" tail -n 30 /var/log/redis/ci.log >&2 || true
            return 1
        fi
        sleep 0.5
    done
    services_log "redis is up"
}

start_rabbitmq() {
    services_log "starting rabbitmq-server (detached)"
    # Returns before the node is up; a node that is already booting makes this
    # second start fail harmlessly, and the wait below still sees the first one.
    # A node recovering many queues needs a file descriptor or more each: with
    # the usual soft limit of 1024 a node left with a few thousand queues by
    # earlier runs takes minutes to boot, or fails. Raise it to the hard limit.
    "${SUDO[@]}" sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec rabbitmq-server -detached' || true
    local deadline=$((SECONDS + 300))
    while true; do
        # await_startup fails when asked too early (no node to talk to yet): retry it.
        # Its own --timeout, never `timeout`: a killed CLI leaves its Erlang node behind,
        # and ten of them use up the CLI distribution ports (35672-35682).
        if port_open "$RABBITMQ_PORT" &&
            "${SUDO[@]}" rabbitmqctl -q await_startup --timeout 20 >/dev/null 2>&1; then
            break
        fi
        if ((SECONDS >= deadline)); then
            services_log "rabbitmq did not come up within 300s"
            "${SUDO[@]}" sh -c 'tail -n 30 /var/log/rabbitmq/*.log' >&2 2>/dev/null || true
            return 1
        fi
        sleep 1
    done
    services_log "rabbitmq is up"
}

# Leaves RabbitMQ (5672) and Redis (6379) accepting connections, or fails.
ensure_services() {
    local need_rabbitmq=false need_redis=false missing=()
    if port_open "$RABBITMQ_PORT"; then
        services_log "rabbitmq answers on port $RABBITMQ_PORT"
    else
        need_rabbitmq=true
        command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
    fi
    if port_open "$REDIS_PORT"; then
        services_log "redis answers on port $REDIS_PORT"
    else
        need_redis=true
        command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    fi
    if ((${#missing[@]} > 0)); then
        install_packages "${missing[@]}"
    fi
    # A package's install script may have started its service already.
    if $need_redis && ! port_open "$REDIS_PORT"; then
        start_redis
    fi
    if $need_rabbitmq && ! port_open "$RABBITMQ_PORT"; then
        start_rabbitmq
    fi
}
