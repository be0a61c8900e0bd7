#!/usr/bin/env bash
# Command trials: spawn → first trace point and stop → exit (p50, p99), and trace lines per
# second through the worker's trial path (tests/src/bin/bench-command.rs; BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p lrsweep-tests --bin bench-command
target="${CARGO_TARGET_DIR:-target}"
"$target/release/bench-command" --trials "${TRIALS:-200}" --lines "${LINES:-2000000}"
