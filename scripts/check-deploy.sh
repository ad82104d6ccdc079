#!/usr/bin/env bash
# Offline checks of what deploys herald: the Dockerfile, the compose stack and
# the Kubernetes manifests, each parsed and validated by a real parser or
# schema (tests/deploy/check_*.py). The Python tools they need live in a
# virtualenv this script makes under target/ (kept between runs, rebuilt when
# tests/deploy/requirements.txt changes). Called by scripts/test.sh; runs alone too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv=target/deploy-venv
ensure_venv "$venv" tests/deploy/requirements.txt

status=0
for check in tests/deploy/check_*.py; do
    echo "--- $check"
    "$venv/bin/python" "$check" || status=1
done
exit $status
