#!/usr/bin/env bash
# Offline checks of what deploys herald: the Dockerfile, the compose stack and
# the Kubernetes manifests, each parsed and validated by a real parser or
# schema (tests/deploy/check_*.py). The Python tools they need live in a
# virtualenv this script makes under target/ (kept between runs, rebuilt when
# tests/deploy/requirements.txt changes). Called by scripts/test.sh; runs alone too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/deploy-venv
requirements=tests/deploy/requirements.txt
stamp=$venv/.requirements
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
    echo "check-deploy: making the virtualenv $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

status=0
for check in tests/deploy/check_*.py; do
    echo "--- $check"
    "$venv/bin/python" "$check" || status=1
done
exit $status
