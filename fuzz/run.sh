#!/usr/bin/env bash
# Runs every fuzz target for EXECS executions (default 1,000,000), one after the other, then
# minimises each corpus (-merge=1) in place. Prints executions and exec/s per target; a crash,
# hang (-timeout) or allocation past the limits stops the script with libFuzzer's report and
# leaves the input under fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [EXECS]
#
# Needs cargo-fuzz (installed if missing) and, on a stable toolchain, RUSTC_BOOTSTRAP=1 for the
# sanitizer flags (set here). The build goes to $FUZZ_TARGET_DIR (default target/ here).
set -euo pipefail
cd "$(dirname "$0")"
EXECS=${1:-1000000}
export RUSTC_BOOTSTRAP=1
TARGET_DIR=${FUZZ_TARGET_DIR:-target}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# target:max_len (bytes): a few KB covers every structure a target can reach.
TARGETS="spec:4096 register:1024 worker_message:4096 coordinator_message:2048 csv:4096
libsvm:4096 idx:4096 trace_line:512"

cargo fuzz build -a --target-dir "$TARGET_DIR"
printf '%-22s %12s %10s\n' target executions exec/s
for entry in $TARGETS; do
    t=${entry%%:*} max_len=${entry##*:}
    log=$(mktemp)
    if ! cargo fuzz run -a --target-dir "$TARGET_DIR" "$t" "corpus/$t" -- \
        -runs="$EXECS" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -60 "$log"
        echo "fuzz target $t FAILED (log: $log)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    printf '%-22s %12s %10s\n' "$t" "$runs" "$speed"
    rm -f "$log"
    # Keep the checked-in corpus small: a smallest set of inputs that covers every edge the
    # corpus reaches (edges, not hit counts: -use_counters=0).
    minimal=$(mktemp -d)
    cargo fuzz run -a --target-dir "$TARGET_DIR" "$t" "$minimal" "corpus/$t" -- \
        -merge=1 -set_cover_merge=1 -use_counters=0 -max_len="$max_len" >/dev/null 2>&1
    rm -rf "corpus/$t"
    mv "$minimal" "corpus/$t"
    chmod 755 "corpus/$t"
done
