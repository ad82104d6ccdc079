#!/usr/bin/env bash
# The soak (RELIABILITY.md L1): steady load for N minutes with a worker
# SIGKILLed every 2 minutes, the broker every 5 and Redis every 7 (a private
# RabbitMQ node and Redis of the test's own), printing the steady worker's RSS
# and open files every 30 s, then the ledger. Flat RSS and fds are the target.
#
#   scripts/soak.sh [MINUTES]     (default 30)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

ensure_services
mkdir -p target/chaos
export HERALD_SOAK_MINUTES=${1:-30}
cargo nextest run --locked --test it --profile soak 2>&1 | tee target/chaos/soak.log
echo
grep -oE '(SOAK|LEDGER) \| .*' target/chaos/soak.log
