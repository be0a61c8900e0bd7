#!/usr/bin/env python3
"""A small CNN in PyTorch on the bundled 8x8 digits, as an lrsweep command trainer.

Everything lrsweep needs from a training script is here:
  - the rate, budget and evaluation interval from the command line ({lr}, {steps}, {eval_every});
  - the subset from {seed}, {replicate}, {replicates} and {data_fraction}, and initial weights
    and data order from {seed} and {replicate} only, so every rate trains on the same data from
    the same start (paired comparisons);
  - one JSON line per step on stdout: {"step", "loss"}, "val_loss" on evaluation steps, "lr" the
    rate the optimizer used;
  - SIGTERM (lrsweep stops pruned trials) finishes the current step and exits.
It runs on CPU or on the GPU lrsweep gave this slot (CUDA_VISIBLE_DEVICES).
"""

import argparse
import csv
import json
import os
import signal
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "..", "..", "worker", "data", "digits.csv")

stopping = False


def on_sigterm(signum, frame):
    global stopping
    stopping = True


def model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def main():
    ap = argparse.ArgumentParser()
    for name, kind in [("lr", float), ("steps", int), ("eval-every", int), ("seed", int),
                       ("replicate", int), ("replicates", int), ("data-fraction", float)]:
        ap.add_argument("--" + name, type=kind, required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    with open(DIGITS) as f:
        rows = list(csv.reader(f))[1:]
    x = torch.tensor([[float(v) for v in r[:-1]] for r in rows]).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor([int(r[-1]) for r in rows])

    # The validation split and the subsets depend on the seed only.
    split = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(y), generator=split)
    n_val = len(y) // 5
    val, train = order[:n_val], order[n_val:]
    share = train[: max(args.replicates, round(len(train) * args.data_fraction))]
    size = len(share) // args.replicates
    subset = share[args.replicate * size : (args.replicate + 1) * size]
    x_val, y_val = x[val].to(device), y[val].to(device)
    x_sub, y_sub = x[subset].to(device), y[subset].to(device)

    # Initial weights and minibatch order: seed and replicate, never the rate.
    torch.manual_seed(args.seed * 1000 + args.replicate)
    net = model().to(device)
    batches = torch.Generator().manual_seed(args.seed * 1000 + args.replicate + 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    perm, at = torch.randperm(len(subset), generator=batches), 0

    for step in range(1, args.steps + 1):
        if at + args.batch_size > len(perm):
            perm, at = torch.randperm(len(subset), generator=batches), 0
        idx = perm[at : at + args.batch_size].to(device)
        at += args.batch_size
        net.train()
        loss = loss_fn(net(x_sub[idx]), y_sub[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        line = {"step": step, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]}
        if step % args.eval_every == 0 or step == args.steps:
            net.eval()
            with torch.no_grad():
                line["val_loss"] = loss_fn(net(x_val), y_val).item()
        # json writes NaN as NaN, which lrsweep reads (and prunes the trial on).
        print(json.dumps(line), flush=True)
        if stopping:
            return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
