#!/usr/bin/env python3
"""Search efficiency, the peer (BENCHMARKS.md, "Search efficiency"): Optuna's TPE sampler with its
MedianPruner and with its HyperbandPruner, driving lrsweep's own trainer through the one-trial
command `lrsweep-worker train --spec FILE --lr X`, on the same problems and seeds as
tests/src/bin/bench-search.rs, scored against the same ground truth.

    optuna_peer.py run --results SEARCH.json --worker-bin PATH --out OPTUNA.json [--trials 30]
    optuna_peer.py compare --results SEARCH.json [--optuna OPTUNA.json]
    optuna_peer.py generalization --input OUT/report-peer.json --worker-bin PATH --out FILE

`generalization` runs the same studies on bench-generalization's searches (its <set>-peer.json
lists each search's one-trial spec); bench-generalization --optuna FILE scores them.

`run` (needs optuna) reads bench-search's results for each problem and seed: the one-trial spec
file (the problem's [trainer] with that seed, the full budget and the evaluation interval), the
ground truth's best loss L* and the grid's step count. Each study suggests lr log-uniformly in
[1e-7, 10]; each trial starts the one-trial command, reads its JSON lines, reports every
validation loss to Optuna at its step (trial.report) and, when trial.should_prune() says so,
sends the process SIGTERM and counts the steps up to that report. A non-finite loss ends the
trial as pruned (Optuna cannot rank NaN; our sweep's divergence check does the same). A trial
that runs its budget returns its final validation loss, which is exactly the ground truth's
measurement at that rate (the same trainer, data, seed and steps), so the quality of the study's
best rate is its best value / L*.

The sampler is seeded with the problem seed and the study runs one trial at a time, so the
study's first n trials are the study that would have run with n_trials = n: the results list,
for n = 5, 10, ..., every prefix's steps and hit, and the steps after which the incumbent first
came within 2% (an oracle stopping point Optuna itself cannot know).

`compare` (standard library only) prints the side-by-side markdown tables: every strategy and
Optuna per problem, per seed and median, with the ratio of steps to the default strategy's.
"""

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time

HIT = 1.02
PRUNERS = ("median", "hyperband")
STRATEGY_LABELS = {
    "c2f": "lrsweep coarse-to-fine (dominated pruning)",
    "c2f-noprune": "lrsweep coarse-to-fine, no pruning",
    "grid": "lrsweep grid 1.25 (default pruning)",
    "random": "lrsweep random (c2f's rate count, default pruning)",
    "range": "lrsweep range test",
    "range-refine": "lrsweep range test + refine",
}


def run_trial(worker_bin, spec, lr, trial, optuna):
    """Runs one trial; returns (value or None if pruned, steps used, how it ended)."""
    proc = subprocess.Popen(
        [worker_bin, "train", "--spec", spec, "--lr", repr(lr)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    steps = 0
    ended = None
    value = None
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("done"):
                steps = msg["steps"]
                if msg.get("diverged"):
                    ended = "diverged"
                else:
                    value = msg["final_val_loss"]
                    ended = "completed" if value is not None else "diverged"
                break
            steps = msg["step"]
            val, train = msg["val_loss"], msg["train_loss"]
            if val is None or train is None:
                ended = "diverged"
                break
            trial.report(val, steps)
            if trial.should_prune():
                ended = "pruned"
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        code = proc.wait()
    if ended is None:
        raise RuntimeError(f"lrsweep-worker train --lr {lr} exited {code} without a done line: {err}")
    return value, steps, ended


def run_study(optuna, worker_bin, spec, name, seed, pruner_name, n_trials, best_loss, grid_steps):
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = (
        optuna.pruners.MedianPruner()
        if pruner_name == "median"
        else optuna.pruners.HyperbandPruner()
    )
    # A fixed name: HyperbandPruner puts trials into brackets by a hash of the study name and
    # trial number, so a generated (random) name would make the study unrepeatable.
    study = optuna.create_study(
        study_name=f"{name}-seed{seed}-{pruner_name}",
        direction="minimize",
        sampler=sampler,
        pruner=pruner,
    )
    log = []

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-7, 10.0, log=True)
        value, steps, ended = run_trial(worker_bin, spec, lr, trial, optuna)
        log.append({"lr": lr, "steps": steps, "ended": ended, "value": value})
        if ended != "completed":
            raise optuna.TrialPruned()
        return value

    started = time.monotonic()
    study.optimize(objective, n_trials=n_trials)
    wall = time.monotonic() - started

    # Every prefix of the (sequential, seeded) study is the study with that many trials.
    cumulative, best_value, best_lr, first_hit = 0, math.inf, None, None
    prefixes = []
    for n, entry in enumerate(log, start=1):
        cumulative += entry["steps"]
        if entry["ended"] == "completed" and entry["value"] < best_value:
            best_value, best_lr = entry["value"], entry["lr"]
        quality = best_value / best_loss
        if first_hit is None and quality <= HIT:
            first_hit = {"trials": n, "steps": cumulative, "steps_pct": 100.0 * cumulative / grid_steps}
        prefixes.append(
            {
                "trials": n,
                "steps": cumulative,
                "steps_pct": 100.0 * cumulative / grid_steps,
                "best_lr": best_lr,
                "quality": quality if math.isfinite(quality) else None,
                "hit": quality <= HIT,
            }
        )
    final = prefixes[-1]
    return {
        "pruner": pruner_name,
        "trials": len(log),
        "total_steps": final["steps"],
        "steps_pct": final["steps_pct"],
        "best_lr": final["best_lr"],
        "quality": final["quality"],
        "hit": final["hit"],
        "wall_s": wall,
        "first_hit": first_hit,
        "prefixes": prefixes,
        "log": log,
    }


def cmd_run(args):
    try:
        import optuna
    except ImportError:
        print("optuna_peer: optuna is not installed; skipping the Optuna peer", file=sys.stderr)
        return 3
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = json.load(open(args.results))
    out = {
        "benchmark": "search-efficiency-optuna",
        "optuna": optuna.__version__,
        "python": sys.version.split()[0],
        "n_trials": args.trials,
        "command": " ".join(sys.argv),
        "problems": [],
    }
    started = time.monotonic()
    for problem in results["problems"]:
        if args.problems and problem["name"] not in args.problems.split(","):
            continue
        entry = {"name": problem["name"], "grid_steps": problem["grid_steps"], "seeds": []}
        for seed_result in problem["seeds"]:
            seed = seed_result["seed"]
            best_loss = seed_result["ground_truth"]["best_loss"]
            spec = seed_result["one_trial_spec"]
            studies = []
            for pruner in args.pruners.split(","):
                study = run_study(
                    optuna, args.worker_bin, spec, problem["name"], seed, pruner, args.trials, best_loss,
                    problem["grid_steps"],
                )
                fh = study["first_hit"]
                first = "-" if fh is None else f"{fh['steps_pct']:.2f}% (trial {fh['trials']})"
                print(
                    f"   {problem['name']} seed {seed} optuna-{pruner:<9} steps {study['total_steps']:>6} "
                    f"({study['steps_pct']:5.2f}%)  best_lr {study['best_lr'] or float('nan'):.3e}  "
                    f"quality {study['quality'] or float('inf'):.4f}{' hit' if study['hit'] else '    '}  "
                    f"first hit {first}  "
                    f"{study['wall_s']:.1f}s",
                    file=sys.stderr,
                )
                studies.append(study)
            entry["seeds"].append({"seed": seed, "best_loss": best_loss, "studies": studies})
        out["problems"].append(entry)
    out["seconds"] = time.monotonic() - started
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"optuna results written to {args.out}", file=sys.stderr)
    return 0


def cmd_generalization(args):
    """The generalization benchmark's peer: one seeded study per search of the set and pruner.
    Only the rates and steps are recorded; bench-generalization scores each prefix's best rate
    on the expected loss (--optuna FILE), like every strategy's pick."""
    try:
        import optuna
    except ImportError:
        print("optuna_peer: optuna is not installed (pip install optuna)", file=sys.stderr)
        return 3
    from concurrent.futures import ThreadPoolExecutor

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searches = json.load(open(args.input))["searches"]
    jobs = [(s, p) for s in searches for p in args.pruners.split(",")]
    started = time.monotonic()

    def one(job):
        search, pruner = job
        study = run_study(
            optuna, args.worker_bin, search["spec"], search["instance"], search["seed"], pruner,
            args.trials, math.nan, 1,
        )
        print(
            f"   {search['instance']} seed {search['seed']} optuna-{pruner}: {study['trials']} trials, "
            f"{study['total_steps']} steps, best_lr {study['best_lr'] or float('nan'):.3e}, "
            f"{study['wall_s']:.1f}s",
            file=sys.stderr,
        )
        keep = ("trials", "steps", "best_lr")
        return {
            "instance": search["instance"],
            "seed": search["seed"],
            "pruner": pruner,
            "wall_s": study["wall_s"],
            "prefixes": [{k: p[k] for k in keep} for p in study["prefixes"]],
            "log": study["log"],
        }

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        studies = list(pool.map(one, jobs))
    out = {
        "benchmark": "generalization-optuna",
        "optuna": optuna.__version__,
        "n_trials": args.trials,
        "command": " ".join(sys.argv),
        "seconds": time.monotonic() - started,
        "studies": studies,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"optuna results written to {args.out}", file=sys.stderr)
    return 0


def fmt_pct(v):
    return "-" if v is None else f"{v:.1f}"


def fmt_q(v):
    return "∞" if v is None else f"{v:.3f}"


def med(values):
    values = [v for v in values]
    if not values:
        return None
    inf = [math.inf if v is None else v for v in values]
    m = statistics.median(inf)
    return None if math.isinf(m) else m


def cmd_compare(args):
    results = json.load(open(args.results))
    optuna = json.load(open(args.optuna)) if args.optuna and os.path.exists(args.optuna) else None
    opt_by_problem = {p["name"]: p for p in optuna["problems"]} if optuna else {}
    for problem in results["problems"]:
        name = problem["name"]
        seeds = [s["seed"] for s in problem["seeds"]]
        print(f"\n### {name}: {problem['about']}\n")
        gts = problem["seeds"]
        print(
            "Ground truth per seed (grid {} rates × {} steps = {:,} steps): ".format(
                problem["grid_rates"], problem["full_steps"], problem["grid_steps"]
            )
            + "; ".join(
                f"seed {s['seed']}: L* {s['ground_truth']['best_loss']:.4f} at {s['ground_truth']['best_lr']:.3g}"
                f" ({sum(1 for l in s['ground_truth']['losses'] if l is not None and l <= HIT * s['ground_truth']['best_loss'])} rates within 2%)"
                for s in gts
            )
            + ".\n"
        )
        rows = []  # (label, [(pct, quality)] per seed, wall list)
        for strategy in STRATEGY_LABELS:
            per_seed, walls, proc_walls, proc_pcts = [], [], [], []
            for s in gts:
                run = next((r for r in s["runs"] if r["strategy"] == strategy), None)
                if run is None or "error" in run:
                    per_seed.append(None)
                    continue
                per_seed.append((run["steps_pct"], run["quality"], run["total_steps"]))
                walls.append(run["in_process_s"])
                p = run.get("processes") or {}
                if p.get("wall_s") is not None:
                    proc_walls.append(p["wall_s"])
                    proc_pcts.append(100.0 * p["total_steps"] / problem["grid_steps"])
            rows.append((STRATEGY_LABELS[strategy], strategy, per_seed, walls, proc_walls, proc_pcts))
        opt = opt_by_problem.get(name)
        if opt:
            for pruner in PRUNERS:
                per_seed, walls = [], []
                for s in opt["seeds"]:
                    st = next((x for x in s["studies"] if x["pruner"] == pruner), None)
                    if st is None:
                        per_seed.append(None)
                        continue
                    per_seed.append((st["steps_pct"], st["quality"], st["total_steps"]))
                    walls.append(st["wall_s"])
                label = f"Optuna TPE + {'Median' if pruner == 'median' else 'Hyperband'}Pruner, {optuna['n_trials']} trials"
                rows.append((label, f"optuna-{pruner}", per_seed, walls, [], []))
        c2f_med = med([x[0] for x in rows[0][2] if x])
        print(
            "| search | steps, % of grid (per seed) | median % | ×c2f | quality (per seed) | median quality "
            "| hits | median s, 1 core | 2 worker procs: median s, median % |"
        )
        print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
        for label, key, per_seed, walls, proc_walls, proc_pcts in rows:
            pct = [x[0] if x else None for x in per_seed]
            q = [x[1] if x else None for x in per_seed]
            hits = sum(1 for x in q if x is not None and x <= HIT)
            mp = med([p for p in pct if p is not None])
            ratio = "-" if (mp is None or not c2f_med) else f"{mp / c2f_med:.2f}"
            print(
                f"| {label} | {' · '.join(fmt_pct(p) for p in pct)} | {fmt_pct(mp)} | {ratio} | "
                f"{' · '.join(fmt_q(x) for x in q)} | {fmt_q(med(q))} | {hits}/{len(per_seed)} | "
                f"{'-' if not walls else f'{statistics.median(walls):.2f}'} | "
                f"{'-' if not proc_walls else f'{statistics.median(proc_walls):.2f} s, {statistics.median(proc_pcts):.1f} %'} |"
            )
        if opt:
            print()
            print("Optuna by trial count (prefixes of the same seeded studies):\n")
            print("| pruner | trials | median % of grid | hits | oracle: median % when first within 2% (seeds that got there) |")
            print("| --- | ---: | ---: | ---: | --- |")
            for pruner in PRUNERS:
                studies = [
                    next((x for x in s["studies"] if x["pruner"] == pruner), None) for s in opt["seeds"]
                ]
                studies = [x for x in studies if x]
                if not studies:
                    continue
                n_max = min(x["trials"] for x in studies)
                first = [x["first_hit"]["steps_pct"] for x in studies if x["first_hit"]]
                for n in sorted({5, 10, 15, 20, 25, 30, n_max}):
                    if n > n_max:
                        continue
                    pre = [x["prefixes"][n - 1] for x in studies]
                    hits = sum(1 for p in pre if p["hit"])
                    fh = (
                        f"{statistics.median(first):.1f} ({len(first)}/{len(studies)})"
                        if (first and n == n_max)
                        else ""
                    )
                    print(
                        f"| {pruner} | {n} | {statistics.median(p['steps_pct'] for p in pre):.1f} | "
                        f"{hits}/{len(pre)} | {fh} |"
                    )
    return 0


def study_arguments(parser):
    """What both study commands take: the trainer binary, the output and the studies' shape."""
    parser.add_argument("--worker-bin", required=True, help="the lrsweep-worker binary")
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--pruners", default=",".join(PRUNERS))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the Optuna studies")
    run.add_argument("--results", required=True, help="bench-search's JSON results")
    study_arguments(run)
    run.add_argument("--problems", default="")
    compare = sub.add_parser("compare", help="print the side-by-side tables")
    compare.add_argument("--results", required=True)
    compare.add_argument("--optuna")
    gen = sub.add_parser("generalization", help="studies for bench-generalization's <set>-peer.json")
    gen.add_argument("--input", required=True, help="bench-generalization's <set>-peer.json")
    study_arguments(gen)
    gen.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    return {"run": cmd_run, "compare": cmd_compare, "generalization": cmd_generalization}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
