#!/usr/bin/env bash
# The full chaos run: a sweep with 3 workers while random workers and the coordinator are
# SIGKILLed and restarted, 20 times each, in an order drawn from a seed (printed; pass
# `--seed N` to replay one). Exits 0 once the sweep ended completed, every trial once and final,
# each completed trial's accepted attempt with one stored point per step, and the report rebuilt
# from the database equal to the one written; prints a summary line (kills, restarts, trials,
# attempts, duration). Other flags go to the runner (`--worker-kills`, `--coordinator-kills`,
# `--workers`, `--lease-ms`, `--spec`, `--dir`). Measured runs: BENCHMARKS.md, "Chaos".
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p lrsweep-coordinator -p lrsweep-worker -p lrsweep-tests \
    --bin lrsweep-coordinator --bin lrsweep-worker --bin chaos
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/chaos" --dir "${CARGO_TARGET_DIR:-$PWD/target}/chaos" "$@"
