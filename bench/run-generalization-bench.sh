#!/usr/bin/env bash
# Generalization (BENCHMARKS.md, "Generalization"): each strategy's pick on ten problem families
# (tests/src/bin/bench-generalization.rs), scored on the seed-averaged expected loss. The ground
# truth (84 rates x 5 trainer seeds per instance) is cached in $OUT/ground-truth.json; the first
# run computes it (about 10 minutes on 2 busy cores), later runs reuse it.
#
# Environment:
#   SET=report         tuning (what the strategy was developed on) or report (held-back
#                      families, other data seeds, other search seeds)
#   VARIANTS=c2f,edge  strategies and variants (see variant_spec in the binary)
#   THREADS=2          at most 2
#   OUT=target/bench-generalization
set -euo pipefail
cd "$(dirname "$0")/.."

SET=${SET:-report}
VARIANTS=${VARIANTS:-c2f,edge}
THREADS=${THREADS:-2}
OUT=${OUT:-target/bench-generalization}

cargo build --release --quiet -p lrsweep-tests --bin bench-generalization
TARGET=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p "$OUT"
"$TARGET/release/bench-generalization" --set "$SET" --variants "$VARIANTS" \
    --threads "$THREADS" --out "$OUT" | tee "$OUT/$SET.txt"
