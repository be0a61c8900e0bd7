#!/usr/bin/env bash
# Coordinator scale (BENCHMARKS.md, "Coordinator scale"): N = 10, 100, 1000 simulated workers
# (tests/src/bin/loadgen.rs, real gRPC streams over loopback) against the release coordinator with
# its SQLite store, paced at a fixed rate per worker and unpaced (saturated). Prints every run and
# a table of medians; results in target/bench-scale/ (scale.md, runs.jsonl, each run's logs).
#
# Environment: WORKERS (default 10,100,1000), MODES (paced,unpaced), REPS (3), RATE (points/s per
# worker when paced, 200), STEPS (each trial's budget, 1000), COORDINATOR (another coordinator
# binary to measure, e.g. one built from an earlier commit). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p lrsweep-coordinator -p lrsweep-tests --bin lrsweep-coordinator --bin loadgen
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(uptime)"
exec python3 bench/scale_bench.py \
    --coordinator "${COORDINATOR:-$TARGET/release/lrsweep-coordinator}" \
    --loadgen "$TARGET/release/loadgen" \
    --out "$TARGET/bench-scale" \
    --workers "${WORKERS:-10,100,1000}" \
    --modes "${MODES:-paced,unpaced}" \
    --reps "${REPS:-3}" \
    --rate "${RATE:-200}" \
    --steps "${STEPS:-1000}"
