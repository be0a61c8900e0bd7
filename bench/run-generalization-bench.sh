#!/usr/bin/env bash
# Generalization (BENCHMARKS.md, "Generalization"): each strategy's pick on ten problem families
# (tests/src/bin/bench-generalization.rs), scored on the seed-averaged expected loss. The ground
# truth (84 rates x 20 trainer seeds per instance) is cached in $OUT/ground-truth.json; the first
# run computes it (about 6 minutes on 2 cores), later runs reuse it.
#
# Environment:
#   SET=report         tuning (what the strategy was developed on), tuning-wide (the tuning
#                      families on more data seeds) or report (held-back families, other data
#                      seeds, other search seeds)
#   VARIANTS=c2f,edge,grid  strategies and variants (see variant_spec in the binary; e.g.
#                      edge:scout=0:ladder_stride=6:ladder_patience=3 is the edge descent before
#                      the scout)
#   OPTUNA=1           also the Optuna peer (TPE + Median/Hyperband pruners, scored at 10, 20
#                      and 30 trials) on the same searches; needs `pip install optuna`
#   THREADS=2          at most 2
#   OUT=target/bench-generalization
set -euo pipefail
cd "$(dirname "$0")/.."

SET=${SET:-report}
VARIANTS=${VARIANTS:-c2f,edge,grid}
OPTUNA=${OPTUNA:-0}
THREADS=${THREADS:-2}
OUT=${OUT:-target/bench-generalization}

cargo build --release --quiet -p lrsweep-tests --bin bench-generalization -p lrsweep-worker \
    --bin lrsweep-worker
TARGET=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p "$OUT"
BENCH=("$TARGET/release/bench-generalization" --set "$SET" --threads "$THREADS" --out "$OUT")
PEER=()
if [ "$OPTUNA" = 1 ]; then
    # The ground truth first: it also writes each search's one-trial spec for the peer.
    "${BENCH[@]}" --ground-truth-only
    python3 bench/optuna_peer.py generalization --input "$OUT/$SET-peer.json" \
        --worker-bin "$TARGET/release/lrsweep-worker" --out "$OUT/$SET-optuna.json"
    PEER=(--optuna "$OUT/$SET-optuna.json")
fi
"${BENCH[@]}" --variants "$VARIANTS" "${PEER[@]}" | tee "$OUT/$SET.txt"
