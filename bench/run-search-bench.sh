#!/usr/bin/env bash
# Search efficiency (BENCHMARKS.md, "Search efficiency"): training steps, wall time and quality of
# the recommended rate for every lrsweep strategy (tests/src/bin/bench-search.rs) and for Optuna's
# TPE sampler with its Median and Hyperband pruners driving the same trainer through
# `lrsweep-worker train` (bench/optuna_peer.py), on the same problems and seeds, against the same
# exhaustive-grid ground truth. Prints bench-search's tables, then the side-by-side tables with
# ratios to the default strategy.
#
# Environment:
#   SEEDS=0,1,2,3,4    trainer seeds (at least 5 for the issue's targets)
#   TRIALS=30          Optuna trials per study
#   PROCS=1            also run every sweep as real processes (coordinator + 2 local workers) for
#                      the wall time with 2 workers; PROCS=0 skips that
#   OUT=target/bench-search   where results (search.json, optuna.json, specs/) go
#   LRSWEEP_OPTUNA_VENV=/tmp/lrsweep-optuna-venv   throwaway virtualenv for optuna (from PyPI)
#
# Without Python (or when optuna cannot be installed) the peer is skipped with a message and
# only lrsweep's own tables are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-0,1,2,3,4}
TRIALS=${TRIALS:-30}
PROCS=${PROCS:-1}
OUT=${OUT:-target/bench-search}
VENV=${LRSWEEP_OPTUNA_VENV:-/tmp/lrsweep-optuna-venv}

# One cargo at a time: the target directory is shared.
cargo build --release --quiet -p lrsweep-tests --bin bench-search
cargo build --release --quiet -p lrsweep-worker --bin lrsweep-worker
cargo build --release --quiet -p lrsweep-coordinator --bin lrsweep-coordinator
TARGET=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET/release"

mkdir -p "$OUT/specs"
PROC_ARGS=()
if [ "$PROCS" != 0 ]; then
    PROC_ARGS=(--coordinator-bin "$BIN/lrsweep-coordinator" --worker-bin "$BIN/lrsweep-worker")
fi

echo "== lrsweep strategies (bench-search, seeds $SEEDS)"
"$BIN/bench-search" --seeds "$SEEDS" --out "$OUT/search.json" --spec-dir "$OUT/specs" \
    "${PROC_ARGS[@]}" | tee "$OUT/search.txt"

PY=""
if command -v python3 >/dev/null 2>&1; then
    PY=python3
else
    echo "python3 not found: skipping the Optuna peer and the side-by-side tables" >&2
    exit 0
fi

OPTUNA_JSON=""
if ! "$VENV/bin/python" -c 'import optuna' 2>/dev/null; then
    echo "creating $VENV with optuna" >&2
    if ! { "$PY" -m venv "$VENV" && "$VENV/bin/pip" install --quiet optuna; }; then
        echo "could not install optuna into $VENV: skipping the Optuna peer" >&2
    fi
fi
if "$VENV/bin/python" -c 'import optuna' 2>/dev/null; then
    echo
    echo "== Optuna peer ($TRIALS trials per study)"
    "$VENV/bin/python" bench/optuna_peer.py run --results "$OUT/search.json" \
        --worker-bin "$BIN/lrsweep-worker" --trials "$TRIALS" --out "$OUT/optuna.json"
    OPTUNA_JSON="$OUT/optuna.json"
fi

echo
echo "== side by side"
"$PY" bench/optuna_peer.py compare --results "$OUT/search.json" ${OPTUNA_JSON:+--optuna "$OPTUNA_JSON"} |
    tee "$OUT/compare.md"
