#!/usr/bin/env bash
# The PyTorch check: a virtualenv with torch from PyPI (created if absent: about 5.4 GB, CPU is
# enough), then a sweep of examples/command/pytorch/sweep.toml with two local workers.
#   VENV=/path/to/venv bash examples/command/pytorch/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv="${VENV:-/tmp/lrsweep-torch-venv}"
start=$(date +%s)
if ! "$venv/bin/python3" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch
fi
echo "torch $("$venv/bin/python3" -c 'import torch; print(torch.__version__)') ready after $(( $(date +%s) - start )) s"
cargo build --release --bins
target="${CARGO_TARGET_DIR:-target}"
report="${REPORT:-/tmp/lrsweep-torch-report.json}"
sweep_start=$(date +%s)
# The workers inherit PATH: their `python3` is the virtualenv's.
PATH="$venv/bin:$PATH" "$target/release/lrsweep-coordinator" \
  --spec examples/command/pytorch/sweep.toml --local-workers 2 \
  --db "${DB:-/tmp/lrsweep-torch.db}" --report "$report"
echo "sweep took $(( $(date +%s) - sweep_start )) s; report: $report"
