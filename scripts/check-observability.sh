#!/usr/bin/env bash
# Offline checks of the Prometheus artifacts in deploy/prometheus: the alert
# rules parse, their unit tests pass, and the scrape config is valid. Installs
# the distribution's `prometheus` package (which ships promtool) when promtool
# is missing. Called by scripts/test.sh; runs alone too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    else
        sudo=(sudo)
    fi
    echo "check-observability: installing prometheus (for promtool) from the distribution's packages" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Only the package: its recommends (node exporter and collectors) are not needed here.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

promtool --version 2>&1 | sed -n 1p
promtool check rules deploy/prometheus/alerts.yml
# Test files name their rule files relative to themselves.
promtool test rules deploy/prometheus/alerts_test.yml
promtool check config deploy/prometheus/prometheus.yml
