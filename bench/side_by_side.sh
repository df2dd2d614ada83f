#!/usr/bin/env bash
# lcnn vs PyTorch, CPU, every zoo model: one command, a markdown table on stdout.
#
#   bench/side_by_side.sh                     # from anywhere; ~15-20 min on an idle machine
#   THREADS=4 STEPS_SCALE=0.1 bench/side_by_side.sh      # smoke run
#   ENGINES="native burn" bench/side_by_side.sh            # one lcnn column per --engine
#
# (a) bench/.venv with numpy + torch (PyPI wheel), created on first use; (b) builds lcnn
# (`cargo build --release -p lcnn-cli`) unless LCNN_BIN names a binary; (c) runs lcnn's
# `bench train-step` / `bench predict` and bench/torch_bench.py alternately, RUNS (2) times
# each, keeping the best; (d) prints the table. Environment: see bench/side_by_side.py.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="bench/.venv"

if ! "$venv/bin/python" -c 'import numpy, torch' >/dev/null 2>&1; then
    echo "setting up $venv (numpy, torch; the torch wheel is large) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet numpy torch >&2
fi

if [ -z "${LCNN_BIN:-}" ]; then
    cargo build --release -p lcnn-cli >&2
    LCNN_BIN="${CARGO_TARGET_DIR:-target}/release/lcnn"
fi
export LCNN_BIN

exec "$venv/bin/python" bench/side_by_side.py
