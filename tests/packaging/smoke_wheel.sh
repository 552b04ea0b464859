#!/usr/bin/env bash
# Build forker's wheel, install it alone into a new virtual environment (no
# compiler, no Cython, no index) and run smoke.py there, outside the checkout.
#   tests/packaging/smoke_wheel.sh        (PYTHON=python3.X to choose the interpreter)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/forker-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== building the wheel"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$root"
wheel=$(echo "$work"/dist/forker-*.whl)
echo "$(basename "$wheel")"

echo "== installing it alone into a new virtual environment"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"

echo "== serving from outside the checkout"
cd "$work"
"$work/venv/bin/python" "$root/tests/packaging/smoke.py"
