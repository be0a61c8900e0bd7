#!/usr/bin/env bash
# Trainer speed vs numpy (BENCHMARKS.md, "Trainer speed vs numpy"): MLP training steps per second
# on the bundled digits data, the Rust trainer (tests/src/bin/bench-trainer.rs, release build)
# against the same step in numpy (bench/numpy_mlp.py), both on one thread. Runs REPS rounds
# (default 3), each one Rust run, one numpy run with the environment as it is, and one numpy run
# with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (set on some machines for old OpenBLAS builds;
# they pick a slower kernel for a current numpy). Prints every run, then a table of medians and
# the ratio rust/numpy.
#
# numpy comes from $LRSWEEP_BENCH_VENV (default /tmp/lrsweep-bench-venv), created with numpy and
# threadpoolctl from PyPI if it lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
VENV=${LRSWEEP_BENCH_VENV:-/tmp/lrsweep-bench-venv}
PY="$VENV/bin/python"

if ! "$PY" -c 'import numpy, threadpoolctl' 2>/dev/null; then
    echo "creating $VENV with numpy and threadpoolctl" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy threadpoolctl
fi

cargo build --release --quiet -p lrsweep-tests --bin bench-trainer
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/release/bench-trainer"

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for rep in $(seq 1 "$REPS"); do
    rust=$("$BIN")
    numpy_as_set=$("$PY" bench/numpy_mlp.py)
    numpy_unset=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" bench/numpy_mlp.py)
    for pair in "rust:$rust" "numpy-as-set:$numpy_as_set" "numpy-unset:$numpy_unset"; do
        echo "$rep ${pair%%:*} ${pair#*:}" >>"$RESULTS"
        echo "rep $rep ${pair%%:*}: ${pair#*:}"
    done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys

runs = {}
blas = {}
for line in open(sys.argv[1]):
    rep, kind, text = line.split(" ", 2)
    result = json.loads(text)
    rate = result.get("rust_steps_per_s", result.get("numpy_steps_per_s"))
    runs.setdefault(kind, []).append(rate)
    if "threadpools" in result or "blas" in result:
        pools = result.get("threadpools") or [result.get("blas")]
        blas[kind] = ", ".join(
            f"{p.get('internal_api', p.get('name'))} {p.get('version')} "
            f"kernel {p.get('architecture', '?')} threads {p.get('num_threads', '?')}"
            for p in pools
        ) + f" (numpy {result.get('numpy')}; OPENBLAS_CORETYPE={result['env']['OPENBLAS_CORETYPE']}, "
        blas[kind] += f"OPENBLAS_L2_SIZE={result['env']['OPENBLAS_L2_SIZE']})"

rust = statistics.median(runs["rust"])
print()
print(f"{'implementation':<28} {'runs (steps/s)':<30} {'median':>8} {'rust/this':>9}")
for kind, label in [
    ("rust", "Rust trainer"),
    ("numpy-as-set", "numpy, environment as set"),
    ("numpy-unset", "numpy, OPENBLAS_* unset"),
]:
    values = runs[kind]
    med = statistics.median(values)
    shown = " ".join(f"{v:.0f}" for v in values)
    print(f"{label:<28} {shown:<30} {med:>8.0f} {rust / med:>9.2f}")
print()
for kind, text in blas.items():
    print(f"{kind}: {text}")
EOF
