#!/usr/bin/env bash
# The fault-injection suite: every scenario of ../shared/RELIABILITY.md that
# runs here (K1-K4, B1-B6, P1-P2, R1-R3, H1-H9, T1-T2, S1), plus S2 (five
# workers starting at once) and N1 (a node of a three-node RabbitMQ cluster
# killed under load), one at a time, against herald's binary, real RabbitMQ and
# Redis (private nodes of the test's own where the fault would disturb others)
# and real HTTP receivers. Each scenario prints a LEDGER line; this script
# collects them into a table at the end. About 13 minutes on 2 cores.
#
#   scripts/chaos.sh [FILTER]     (a nextest filter, e.g. 'test(/b1/)')
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

ensure_services
mkdir -p target/chaos
log=target/chaos/chaos.log

args=(--profile chaos)
if [[ $# -gt 0 ]]; then
    args+=(-E "test(/^chaos::/) & not test(/^chaos::soak::/) & ($1)")
fi
started=$(date +%s)
status=0
cargo nextest run --locked --test it "${args[@]}" 2>&1 | tee "$log" || status=$?

echo
echo "== chaos ledger ($(($(date +%s) - started)) s)"
grep -o 'LEDGER | .*' "$log" | sed 's/^LEDGER //' || echo "(no ledger lines)"
echo
echo "== scenario figures"
grep -E '^\s+[a-z][0-9]+[a-z/0-9-]*: ' "$log" | sed 's/^ *//' || true
exit "$status"
