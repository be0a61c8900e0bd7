#!/usr/bin/env python3
"""How jagged is the graded function? The final validation loss of full-budget runs on a fine
log grid (ratio 1.02) for each seed, against the exhaustive grid's best loss L* from
bench-search's results: which share of rates lands within 2% of L* (a hit), band by band.

Run after bench/run-search-bench.sh (it reads target/bench-search/search.json and the one-trial
specs there) with the release `lrsweep-worker`:

    python3 bench/landscape.py [PROBLEM] [LO] [COUNT]     # default: digits-mlp 0.02 175

Two processes at a time; about 45 s for the default on 2 cores.
"""
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "target/bench-search/search.json"
WORKER = ROOT / "target/release/lrsweep-worker"
RATIO = 1.02
BAND = 10  # rates per printed band: a ratio of 1.02^10 ≈ 1.22, about one grid step
HIT = 1.02


def final_loss(spec, lr):
    out = subprocess.run(
        [str(WORKER), "train", "--spec", spec, "--lr", repr(lr)],
        capture_output=True, text=True, check=True,
    ).stdout
    loss = json.loads(out.splitlines()[-1]).get("final_val_loss")
    return loss if loss is not None and math.isfinite(loss) else math.inf


def main():
    problem = sys.argv[1] if len(sys.argv) > 1 else "digits-mlp"
    lo = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 175
    results = json.loads(RESULTS.read_text())
    entry = next(p for p in results["problems"] if p["name"] == problem)
    lrs = [lo * RATIO**k for k in range(count)]
    print(f"{problem}: final validation loss / L* on {count} rates from {lo} at ratio {RATIO}")
    print("per band of 10 rates: its first rate, hits/rates, best ratio in the band")
    with ThreadPoolExecutor(2) as pool:
        for seed in entry["seeds"]:
            best = seed["ground_truth"]["best_loss"]
            spec = seed["one_trial_spec"]
            ratios = [v / best for v in pool.map(lambda lr: final_loss(spec, lr), lrs)]
            hits = sum(r <= HIT for r in ratios)
            bands = []
            for b in range(0, count, BAND):
                seg = ratios[b : b + BAND]
                bands.append(f"{lrs[b]:.3f}:{sum(r <= HIT for r in seg)}/{len(seg)}({min(seg):.2f})")
            print(f"seed {seed['seed']}: {hits}/{count} rates hit; " + " ".join(bands))


if __name__ == "__main__":
    main()
