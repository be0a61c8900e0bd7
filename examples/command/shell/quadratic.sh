#!/bin/sh
# Gradient descent on a 20-dimensional quadratic, f(w) = 1/2 sum_i h_i w_i^2 with curvatures h_i
# log-spaced from 1 to 100, in POSIX sh and awk: the lrsweep contract needs no Python. It reads
# the trial from the LRSWEEP_* environment instead of its arguments. Plain gradient descent
# diverges above 2/h_max = 0.02, so the sweep must find the best rate just below that edge.
exec awk -v lr="$LRSWEEP_LR" -v steps="$LRSWEEP_STEPS" -v every="$LRSWEEP_EVAL_EVERY" \
  -v seed="$LRSWEEP_SEED" 'BEGIN {
  d = 20
  srand(seed + 1)
  for (i = 0; i < d; i++) { h[i] = exp(log(100) * i / (d - 1)); w[i] = 2 * rand() - 1 }
  for (t = 1; t <= steps; t++) {
    loss = 0
    for (i = 0; i < d; i++) { loss += 0.5 * h[i] * w[i] * w[i]; w[i] -= lr * h[i] * w[i] }
    # JSON has no infinity: write it the way Python does, which lrsweep reads.
    text = (loss > 1e300 || loss != loss) ? "Infinity" : sprintf("%.17g", loss)
    if (t % every == 0 || t == steps) printf "{\"step\": %d, \"loss\": %s, \"val_loss\": %s}\n", t, text, text
    else printf "{\"step\": %d, \"loss\": %s}\n", t, text
    fflush()
  }
}'
