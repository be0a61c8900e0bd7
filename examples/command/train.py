#!/usr/bin/env python3
"""Softmax regression on the bundled 8x8 digits, in the Python standard library only: a complete
lrsweep command trainer (README, "Your own training program").

It honours the trial's subset and seed the way lrsweep's own trainer does, so that rates are
compared on the same data, initial weights and minibatch order (a paired comparison):
  - the validation split (20%) depends on --seed only, the same for every trial;
  - the training split is shuffled by --seed, its first --data-fraction taken and cut into
    --replicates equal parts; the trial trains on part --replicate;
  - initial weights and minibatch order depend on --seed and --replicate, never on the rate.
It prints one JSON line per step ({"step", "loss"}, plus "val_loss" every --eval-every steps and
at the last), stops cleanly on SIGTERM, and exits 0 after the last step.
"""

import argparse
import csv
import json
import math
import os
import random
import signal
import sys
from operator import mul

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "..", "worker", "data", "digits.csv")
CLASSES = 10
BATCH = 32

stopping = False


def on_sigterm(signum, frame):
    # lrsweep stops a pruned trial with SIGTERM: finish the step, then exit.
    global stopping
    stopping = True


def load(path):
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    xs = [[float(v) for v in row[:-1]] for row in rows]
    ys = [int(row[-1]) for row in rows]
    return xs, ys


def split(n, seed, fraction, replicate, replicates):
    order = list(range(n))
    random.Random(f"{seed}-validation").shuffle(order)
    n_val = n // 5
    val, train = order[:n_val], order[n_val:]
    random.Random(f"{seed}-subsets").shuffle(train)
    share = train[: max(replicates, round(len(train) * fraction))]
    size = len(share) // replicates
    return train, share[replicate * size : (replicate + 1) * size], val


def standardiser(xs, rows):
    d = len(xs[0])
    mean = [sum(xs[i][j] for i in rows) / len(rows) for j in range(d)]
    std = [
        math.sqrt(sum((xs[i][j] - mean[j]) ** 2 for i in rows) / len(rows)) or 1.0
        for j in range(d)
    ]
    return lambda x: [(v - m) / s for v, m, s in zip(x, mean, std)]


def probabilities(W, b, x):
    logits = [sum(map(mul, w, x)) + bi for w, bi in zip(W, b)]
    top = max(logits)
    if math.isinf(top) or math.isnan(top):
        return None, float("nan")
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps)
    return [e / total for e in exps], top + math.log(total)


def loss_of(W, b, x, y):
    p, lse = probabilities(W, b, x)
    if p is None:
        return float("nan")
    return lse - (sum(map(mul, W[y], x)) + b[y])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicate", type=int, default=0)
    ap.add_argument("--replicates", type=int, default=1)
    ap.add_argument("--data-fraction", type=float, default=1.0)
    ap.add_argument("--data", default=DIGITS)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)

    xs, ys = load(args.data)
    train, subset, val = split(
        len(xs), args.seed, args.data_fraction, args.replicate, args.replicates
    )
    scale = standardiser(xs, train)
    data = {i: scale(xs[i]) for i in subset + val}
    d = len(xs[0])
    init = random.Random(f"{args.seed}-{args.replicate}-init")
    W = [[init.gauss(0.0, 0.01) for _ in range(d)] for _ in range(CLASSES)]
    b = [0.0] * CLASSES
    order_rng = random.Random(f"{args.seed}-{args.replicate}-batches")
    order, at = [], 0

    for step in range(1, args.steps + 1):
        batch = []
        while len(batch) < min(BATCH, len(subset)):
            if at == len(order):
                order = subset[:]
                order_rng.shuffle(order)
                at = 0
            batch.append(order[at])
            at += 1
        gW = [[0.0] * d for _ in range(CLASSES)]
        gb = [0.0] * CLASSES
        loss = 0.0
        for i in batch:
            x, y = data[i], ys[i]
            p, lse = probabilities(W, b, x)
            if p is None:
                loss = float("nan")
                break
            loss += lse - (sum(map(mul, W[y], x)) + b[y])
            for c in range(CLASSES):
                g = p[c] - (1.0 if c == y else 0.0)
                gb[c] += g
                gW[c] = [a + g * v for a, v in zip(gW[c], x)]
        loss /= len(batch)
        point = {"step": step, "loss": loss}
        # A NaN is reported like any loss (lrsweep prunes the trial on it); no update follows.
        if math.isfinite(loss):
            k = args.lr / len(batch)
            W = [[w - k * g for w, g in zip(wr, gr)] for wr, gr in zip(W, gW)]
            b = [bi - k * g for bi, g in zip(b, gb)]
        if step % args.eval_every == 0 or step == args.steps:
            point["val_loss"] = sum(loss_of(W, b, data[i], ys[i]) for i in val) / len(val)
        print(json.dumps(point))
        if stopping:
            return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
