#!/usr/bin/env python3
"""Coordinator scale benchmark (BENCHMARKS.md, "Coordinator scale"), driven by
bench/run-scale-bench.sh once the release binaries are built.

For each repetition, worker count N and mode, one run: a fresh SQLite database, the release
coordinator on a free loopback port, then `loadgen` with N simulated workers. Two modes:

- paced: every worker emits RATE points/s (batches of BATCH points), a fixed load below the
  coordinator's capacity; its latencies are the coordinator's own.
- unpaced: every worker sends as fast as its stream takes, so the coordinator runs saturated;
  points/s is its ingest capacity, and its latencies are mostly time queued behind the backlog.

Each run records what loadgen prints (points, prune and dispatch latency), the coordinator's
CPU time and peak RSS (getrusage of the child, exact at exit), its RSS just before the first
worker connects and once all N sessions are open (the difference / N is memory per connected
worker), the points stored in the database against the points sent, the load generator's own CPU,
and the prune latency split at the moment the last session opened (during the connect storm, and
once every worker is connected), and split again at the moment the coordinator logged the
decision (up: the divergent point's trip to the decision; down: the stop order's trip back).
With --scrape, the coordinator serves its metrics and its own stop-order latency (reading the
batch off the stream to handing the order to the worker's stream) and its runtime's lag (how
late a sleeping task wakes: what every task on a stop order's path waits) are recorded. With
--profile, perf samples the coordinator (SCALE_PERF_ARGS, default "-F 499 -g"; "-F 99
--call-graph dwarf,8192" gives call stacks) into RUN/perf.txt. Prints every run, then a
markdown table of medians per (mode, N), also written to OUT/scale.md; every run's raw numbers
go to OUT/runs.jsonl.
"""

import argparse
import datetime
import json
import math
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

# The grid runs from MIN_LR to MAX_LR; loadgen's traces diverge above 0.5 (about 19% of the rates).
MIN_LR, MAX_LR = 1e-6, 10.0


def spec_text(rates, steps):
    # Log-spaced rates: `rates` points from MIN_LR to MAX_LR need this ratio between neighbours.
    resolution = math.exp(math.log(MAX_LR / MIN_LR) / (rates - 1))
    return f"""[search]
strategy = "grid"
min_lr = {MIN_LR}
max_lr = {MAX_LR}
resolution = {resolution!r}
steps = [{steps}]
replicates = 1

[pruning]
rule = "none"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("coordinator did not start listening")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def load_average():
    return os.getloadavg()[0]


def one_run(args, workdir, n, mode, rep):
    rates = max(args.rates_per_worker * n, args.min_rates)
    run_dir = os.path.join(workdir, f"{mode}-{n}-{rep}")
    os.makedirs(run_dir, exist_ok=True)
    spec = os.path.join(run_dir, "spec.toml")
    db = os.path.join(run_dir, "scale.db")
    for leftover in (db, db + "-wal", db + "-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    with open(spec, "w") as f:
        f.write(spec_text(rates, args.steps))
    port = free_port()
    metrics_port = free_port() if args.scrape else None
    load = load_average()
    coord_log = open(os.path.join(run_dir, "coordinator.log"), "w")
    coord = subprocess.Popen(
        [
            args.coordinator,
            "--spec", spec,
            "--db", db,
            "--report", os.path.join(run_dir, "report.json"),
            "--listen", f"127.0.0.1:{port}",
            "--lease-ms", str(args.lease_ms),
            "--log-format", "json",
            *(["--metrics-listen", f"127.0.0.1:{metrics_port}"] if args.scrape else []),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=coord_log,
    )
    scraped = []
    scraper = threading.Thread(target=scrape_until_exit, args=(metrics_port, coord, scraped))
    if args.scrape:
        scraper.start()
    profiler = None
    try:
        wait_listening(port, coord)
        base_rss = rss_kib(coord.pid)
        if args.profile:
            # Samples the coordinator's threads until it exits (`perf report` below).
            profiler = subprocess.Popen(
                ["perf", "record", "-q", *os.environ.get("SCALE_PERF_ARGS", "-F 499 -g").split(),
                 "-o", os.path.join(run_dir, "perf.data"), "-p", str(coord.pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        command = [
            args.loadgen,
            "--coordinator", f"http://127.0.0.1:{port}",
            "--workers", str(n),
            "--batch", str(args.batch),
            "--max-seconds", str(args.max_seconds),
            "--log-format", "json",
            "--attempts-out", os.path.join(run_dir, "attempts.json"),
            "--workers-per-channel", str(args.workers_per_channel),
        ]
        if mode == "paced":
            command += ["--points-per-sec", str(args.rate)]
        loadgen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connected_rss = []

        def watch_stderr():
            # The moment every session is open, before trials' traces pile up in the sweep.
            with open(os.path.join(run_dir, "loadgen.log"), "w") as log:
                for line in loadgen.stderr:
                    log.write(line)
                    if not connected_rss and '"all_sessions_open"' in line:
                        try:
                            connected_rss.append(rss_kib(coord.pid))
                        except OSError:
                            pass

        watcher = threading.Thread(target=watch_stderr)
        watcher.start()
        stdout = loadgen.stdout.read()
        _, status, loadgen_usage = os.wait4(loadgen.pid, 0)
        loadgen.returncode = os.waitstatus_to_exitcode(status)
        watcher.join()
        _, status, usage = os.wait4(coord.pid, 0)
        coord.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if coord.poll() is None:
            coord.kill()
            coord.wait()
        coord_log.close()
        if scraper.is_alive():
            scraper.join()
        if profiler is not None:
            profiler.wait()
            with open(os.path.join(run_dir, "perf.txt"), "w") as out:
                subprocess.run(
                    ["perf", "report", "-i", os.path.join(run_dir, "perf.data"), "--no-children",
                     "--sort", "symbol", "--stdio", "-g", "none", "--percent-limit", "0.5"],
                    stdout=out, stderr=subprocess.DEVNULL, check=False,
                )
    lines = [l for l in stdout.splitlines() if l.strip()]
    # A run whose workers were not all released cleanly (loadgen exit 1) still has its numbers:
    # kept, marked, and counted as a failure at the end.
    if loadgen.returncode not in (0, 1) or coord.returncode != 0 or not lines:
        raise RuntimeError(
            f"run {mode} N={n}: loadgen exit {loadgen.returncode}, coordinator exit "
            f"{coord.returncode}; logs in {run_dir}"
        )
    line = json.loads(lines[-1])
    # Prune latency split at the moment the last session opened: during the connect storm, and
    # once every worker is connected (the issue's target).
    with open(os.path.join(run_dir, "attempts.json")) as f:
        attempts = json.load(f)
    split = {"storm": [], "connected": []}
    for a in attempts:
        if a.get("prune_latency_ms") is not None:
            phase = "connected" if a["stopped_at_s"] >= (line["connect_s"] or 0) else "storm"
            split[phase].append(a["prune_latency_ms"])
    legs = stop_legs(os.path.join(run_dir, "coordinator.log"), attempts)
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT coalesce(sum(points), 0) FROM point_batches").fetchone()[0]
        trials = conn.execute("SELECT count(*) FROM trials").fetchone()[0]
    if not args.keep_db:
        # A saturated run writes gigabytes; a series of them would fill the disk.
        for path in (db, db + "-wal", db + "-shm"):
            if os.path.exists(path):
                os.remove(path)
    elapsed = line["elapsed_s"]
    cpu = usage.ru_utime + usage.ru_stime
    metrics_text = scraped[-1] if scraped else ""
    result = {
        "mode": mode,
        "workers": n,
        "rep": rep,
        "trials": trials,
        "rate_per_worker": args.rate if mode == "paced" else None,
        "points_sent": line["points_sent"],
        "points_stored": stored,
        "dropped": line["points_sent"] - stored,
        "elapsed_s": elapsed,
        "points_per_s": line["points_per_s"],
        "prune_p50_ms": line["prune_latency_ms"]["p50"],
        "prune_p99_ms": line["prune_latency_ms"]["p99"],
        "prune_max_ms": line["prune_latency_ms"]["max"],
        "prune_n": line["prune_latency_ms"]["n"],
        "prune_connected_p50_ms": percentile(split["connected"], 0.50),
        "prune_connected_p99_ms": percentile(split["connected"], 0.99),
        "prune_connected_n": len(split["connected"]),
        "prune_storm_p99_ms": percentile(split["storm"], 0.99),
        "prune_storm_n": len(split["storm"]),
        "dispatch_p50_ms": line["dispatch_latency_ms"]["p50"],
        "dispatch_p99_ms": line["dispatch_latency_ms"]["p99"],
        "dispatch_n": line["dispatch_latency_ms"]["n"],
        "connect_s": line["connect_s"],
        "coordinator_cpu_s": round(cpu, 2),
        "coordinator_cores": round(cpu / elapsed, 2) if elapsed > 0 else None,
        # The load generator shares the machine's cores: when the two add up to all of them, every
        # latency includes waiting for a core.
        "loadgen_cores": round((loadgen_usage.ru_utime + loadgen_usage.ru_stime) / elapsed, 2)
        if elapsed > 0 else None,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "base_rss_mib": round(base_rss / 1024, 1),
        "rss_per_worker_kib": round((connected_rss[0] - base_rss) / n, 1) if connected_rss else None,
        "load_avg_1m": round(load, 2),
        # The coordinator's own share of the stop latency: from reading the batch off the stream
        # to handing the stop order to the worker's stream (its histogram's bucket bounds).
        **histogram(metrics_text, "lrsweep_stop_order_latency_seconds", "inside"),
        **histogram(metrics_text, "lrsweep_runtime_lag_seconds", "runtime_lag"),
        **legs,
        "errors": line["errors"],
        "loadgen_exit": loadgen.returncode,
    }
    return result


def stop_legs(coordinator_log, attempts):
    """Each prune's latency split at the moment the coordinator logged its decision (both wall
    clocks of this machine): up = the divergent point's trip to the decision, down = the stop
    order's trip from the decision to the worker."""
    decided = {}
    with open(coordinator_log) as f:
        for line in f:
            if '"trial_pruned"' in line:
                event = json.loads(line)
                at = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                decided[event["trial"]] = at.timestamp() * 1e3
    up, down = [], []
    for a in attempts:
        latency, received = a.get("prune_latency_ms"), a.get("stopped_unix_ms")
        if latency is None or received is None or a["trial"] not in decided:
            continue
        up.append(decided[a["trial"]] - (received - latency))
        down.append(received - decided[a["trial"]])
    return {
        "up_p50_ms": percentile(up, 0.50), "up_p99_ms": percentile(up, 0.99),
        "down_p50_ms": percentile(down, 0.50), "down_p99_ms": percentile(down, 0.99),
    }


def scrape_until_exit(port, coord, scraped):
    """Keeps the coordinator's last /metrics text, read every 100 ms until it exits."""
    while coord.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                scraped.append(r.read().decode())
                del scraped[:-1]
        except OSError:
            pass
        time.sleep(0.1)


def histogram(text, name, key):
    """p50/p99 upper bounds (ms) and count of the coordinator's histogram `name`, as KEY_p50_ms,
    KEY_p99_ms and KEY_n."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{le="):
            le, count = line.split('le="')[1].split('"}')
            buckets.append((float(le), float(count)))
    if not buckets or buckets[-1][1] == 0:
        return {f"{key}_p50_ms": None, f"{key}_p99_ms": None, f"{key}_n": 0}
    total = buckets[-1][1]
    bound = lambda q: next(le for le, c in buckets if c >= q * total) * 1e3
    return {f"{key}_p50_ms": bound(0.5), f"{key}_p99_ms": bound(0.99), f"{key}_n": int(total)}


def percentile(values, q):
    # Nearest rank, as loadgen computes its own.
    if not values:
        return None
    values = sorted(values)
    return round(values[max(1, math.ceil(q * len(values))) - 1], 3)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, int) or (isinstance(v, float) and v >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def table(results, rate, batch):
    header = (
        "| mode | workers | runs | points/s (each run) | dropped | prune p50 / p99 ms (n) "
        "| dispatch p50 / p99 ms | coordinator cores | peak RSS MiB | KiB per worker | load |\n"
        "| --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | --- |\n"
    )
    rows = []
    keys = sorted({(r["mode"], r["workers"]) for r in results}, key=lambda k: (k[0] != "paced", k[1]))
    for mode, n in keys:
        rs = [r for r in results if (r["mode"], r["workers"]) == (mode, n)]
        label = f"paced, {rate:g} points/s each" if mode == "paced" else "unpaced (saturated)"
        m = lambda key: median([r[key] for r in rs])
        rows.append(
            f"| {label} | {n:,} | {len(rs)} | "
            + " · ".join(fmt(r["points_per_s"]) for r in rs)
            + f" (median {fmt(m('points_per_s'))}) | {sum(r['dropped'] for r in rs)} | "
            f"{fmt(m('prune_p50_ms'))} / {fmt(m('prune_p99_ms'))} ({fmt(m('prune_n'))}) | "
            f"{fmt(m('dispatch_p50_ms'))} / {fmt(m('dispatch_p99_ms'))} | "
            f"{fmt(m('coordinator_cores'), 2)} | {fmt(m('peak_rss_mib'))} | "
            f"{fmt(m('rss_per_worker_kib'))} | "
            + "–".join(fmt(x, 1) for x in (min(r["load_avg_1m"] for r in rs), max(r["load_avg_1m"] for r in rs)))
            + " |"
        )
    return header + "\n".join(rows) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coordinator", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", default="10,100,1000")
    p.add_argument("--modes", default="paced,unpaced")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="points/s per worker when paced")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000, help="each trial's budget")
    p.add_argument("--rates-per-worker", type=int, default=4, help="grid rates per worker")
    p.add_argument("--min-rates", type=int, default=60)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--workers-per-channel", type=int, default=50,
                   help="simulated workers sharing one HTTP/2 connection (a real worker has its own)")
    p.add_argument("--lease-ms", type=int, default=30000, help="the coordinator's --lease-ms")
    p.add_argument("--scrape", action="store_true",
                   help="serve the coordinator's metrics and record its own stop-order latency")
    p.add_argument("--keep-db", action="store_true",
                   help="keep each run's database (RUN/scale.db) instead of deleting it once counted")
    p.add_argument("--profile", action="store_true",
                   help="record each run's coordinator with perf; its report goes to RUN/perf.txt")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    workers = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    results = []
    with open(os.path.join(args.out, "runs.jsonl"), "w") as runs:
        # Interleaved, so that a busy spell on the machine does not hit one configuration only.
        for rep in range(1, args.reps + 1):
            for mode in modes:
                for n in workers:
                    r = one_run(args, args.out, n, mode, rep)
                    results.append(r)
                    runs.write(json.dumps(r) + "\n")
                    runs.flush()
                    print(json.dumps(r), flush=True)
    md = table(results, args.rate, args.batch)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    if any(r["dropped"] != 0 for r in results):
        print("error: points were dropped", file=sys.stderr)
        return 1
    if any(r["loadgen_exit"] != 0 for r in results):
        print("error: some workers were not released cleanly (loadgen exit 1)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
