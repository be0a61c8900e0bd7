#!/usr/bin/env python3
"""numpy baseline for bench-trainer: the same MLP training step on the same data.

Digits (worker/data/digits.csv), 20% held out for validation, features standardised with the
training split's mean and standard deviation (constant columns: std 1). MLP 64 -> 64 -> 64 -> 10,
ReLU, He init for the hidden layers, LeCun for the output, zero biases, float64. Each step does
what the Rust trainer's step does: gather a minibatch of 32 rows (reshuffling the training order
each epoch), forward, softmax cross-entropy with log-sum-exp, backward, plain SGD at rate 0.05.
200 untimed warm-up steps, then 2,000 timed ones, on one thread: the BLAS thread variables are
set to 1 before numpy is imported.

Prints one JSON object with numpy_steps_per_s and which BLAS (and which kernel) numpy runs.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
HIDDEN = (64, 64)
BATCH = 32
LR = 0.05
VALIDATION_FRACTION = 0.2


def load(seed):
    table = np.loadtxt(ROOT / "worker" / "data" / "digits.csv", delimiter=",", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = round(VALIDATION_FRACTION * len(y))
    train = order[n_val:]
    x, y = x[train], y[train]
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std <= 1e-12] = 1.0
    return np.ascontiguousarray((x - mean) / std), y


class Mlp:
    def __init__(self, features, classes, rng):
        sizes = (features, *HIDDEN, classes)
        self.w, self.b = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            gain = 2.0 if i < len(sizes) - 2 else 1.0
            self.w.append(rng.standard_normal((fan_in, fan_out)) * np.sqrt(gain / fan_in))
            self.b.append(np.zeros(fan_out))

    def step(self, x, y):
        """One SGD step on batch (x, y); returns the batch's mean loss before the update."""
        n = len(y)
        rows = np.arange(n)
        # Forward: activations of every layer, ReLU after all but the last.
        acts = [x]
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            z = acts[-1] @ w
            z += b
            if i < len(self.w) - 1:
                np.maximum(z, 0.0, out=z)
            acts.append(z)
        z = acts[-1]
        # Softmax cross-entropy through log-sum-exp, and d(mean loss)/dz.
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(m[:, 0] + np.log(s[:, 0]) - z[rows, y]))
        delta = e / s
        delta[rows, y] -= 1.0
        delta /= n
        # Backward and update, last layer first.
        for i in range(len(self.w) - 1, -1, -1):
            w = self.w[i]
            grad_w = acts[i].T @ delta
            grad_b = delta.sum(axis=0)
            if i > 0:
                delta = delta @ w.T
                delta[acts[i] <= 0.0] = 0.0
            w -= LR * grad_w
            self.b[i] -= LR * grad_b
        return loss


def blas_info():
    info = {"numpy": np.__version__}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = {k: blas.get(k) for k in ("name", "version")}
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x, y = load(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    model = Mlp(x.shape[1], int(y.max()) + 1, rng)
    order = rng.permutation(len(y))
    cursor = 0
    tail, tail_loss = min(args.steps, 100), 0.0

    def one_step():
        nonlocal order, cursor
        if cursor + BATCH > len(order):
            order = rng.permutation(len(y))
            cursor = 0
        idx = order[cursor : cursor + BATCH]
        cursor += BATCH
        return model.step(x[idx], y[idx])

    for _ in range(args.warmup):
        one_step()
    started = time.perf_counter()
    for k in range(args.steps):
        loss = one_step()
        if k >= args.steps - tail:
            tail_loss += loss
    seconds = time.perf_counter() - started

    print(
        json.dumps(
            {
                "numpy_steps_per_s": args.steps / seconds,
                "steps": args.steps,
                "warmup": args.warmup,
                "batch_size": BATCH,
                "hidden": list(HIDDEN),
                "lr": LR,
                "train_rows": len(y),
                "features": x.shape[1],
                "final_train_loss": tail_loss / max(tail, 1),
                "env": {
                    k: os.environ.get(k)
                    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
                },
                **blas_info(),
            }
        )
    )


if __name__ == "__main__":
    main()
