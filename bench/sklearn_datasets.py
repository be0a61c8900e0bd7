#!/usr/bin/env python3
"""Real datasets the search was never developed on (BENCHMARKS.md, "Generalization"): writes
scikit-learn's bundled datasets as CSV and a manifest for `bench-generalization --external`.

    python3 bench/sklearn_datasets.py OUT_DIR      (needs: pip install scikit-learn)

Nothing is downloaded: these datasets ship inside the scikit-learn package. Each becomes one
instance with a model, optimizer, batch size and budget chosen here once, before any run.
"""

import csv
import json
import os
import sys


def main():
    try:
        from sklearn import datasets
    except ImportError:
        print("sklearn_datasets: scikit-learn is not installed (pip install scikit-learn)", file=sys.stderr)
        return 3
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/sklearn-check")
    os.makedirs(out, exist_ok=True)
    loaders = {
        "wine": datasets.load_wine,
        "breast-cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }
    sgd = 'optimizer = { kind = "sgd" }\n'
    momentum = 'optimizer = { kind = "sgd", momentum = 0.9 }\n'
    adam = 'optimizer = { kind = "adam" }\n'
    # (instance, dataset, regression, model line, optimizer line, batch line, steps)
    instances = [
        ("sk-wine-softmax-momentum16", "wine", False, 'model = { kind = "softmax" }\n', momentum,
         "batch_size = 16\n", 500),
        ("sk-wine-mlp64x2-sgd8", "wine", False,
         'model = { kind = "mlp", hidden = [64, 64], activation = "relu" }\n', sgd, "batch_size = 8\n", 1000),
        ("sk-breast-cancer-logistic-sgd32", "breast-cancer", False, 'model = { kind = "logistic" }\n', sgd,
         "batch_size = 32\n", 1000),
        ("sk-breast-cancer-mlp32-adam32", "breast-cancer", False,
         'model = { kind = "mlp", hidden = [32], activation = "relu" }\n', adam, "batch_size = 32\n", 1000),
        ("sk-iris-mlp16-tanh-full", "iris", False,
         'model = { kind = "mlp", hidden = [16], activation = "tanh" }\n', sgd, "full_batch = true\n", 1000),
        ("sk-diabetes-linear-full", "diabetes", True, 'model = { kind = "linear" }\n', sgd,
         "full_batch = true\n", 300),
        # (The trainer's MLP classifies only: regression is linear.)
        ("sk-diabetes-linear-momentum8", "diabetes", True, 'model = { kind = "linear" }\n', momentum,
         "batch_size = 8\n", 1000),
    ]
    written = {}
    manifest = []
    for name, dataset, regression, model, optimizer, batch, steps in instances:
        if dataset not in written:
            data = loaders[dataset]()
            path = os.path.join(out, f"{dataset}.csv")
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow([f"x{j}" for j in range(data.data.shape[1])] + ["label"])
                for x, y in zip(data.data, data.target):
                    w.writerow([f"{v:.6g}" for v in x] + [f"{float(y):.6g}" if regression else int(y)])
            written[dataset] = path
        manifest.append({
            "name": name, "csv": written[dataset], "regression": regression,
            "trainer": model + optimizer + batch, "steps": steps, "standardize": True,
        })
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(os.path.join(out, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
