"""
How the statistics modes follow a drifting feature
==================================================

One feature drifts while it streams in batches of 50 rows: its true mean holds
at 10, then ramps up to 30, then jumps down to 0 while its standard deviation
jumps from 1 to 3. Three ``BatchNormalizer`` modes learn from the same batches:

- exact (default): the statistics of everything seen, so it never forgets;
- ``momentum=0.05``: each batch moves the statistics 5% of the way to its own;
- ``half_life=500``: a row 500 rows older weighs half as much.

After every batch the running ``mean_`` and ``scale_`` are compared with the
true mean and standard deviation at that point of the stream. Prints a table
of the mean absolute errors and of how many batches each mode needs to follow
the jump; saves ``plot_modes.png`` (running statistics vs the truth) when
matplotlib is installed.

What it shows: the exact mode averages over the whole history, so after a
drift its ``mean_`` lags further and further and its ``scale_`` grows with the
spread of all past means. Both forgetting modes follow the drift. They differ
on ``scale_``: the half-life mode measures the spread of the recent rows, which
includes the movement of the mean inside its window (``scale_`` overshoots
while the mean ramps or jumps, then settles); the momentum mode averages the
variances *within* each batch, so it ignores that movement (which helps here,
but means it depends on the batch size and underestimates the spread when
batches are small or not shuffled).

Set ``SKNORM_QUICK=1`` for a smaller run.
"""

# %%
import os

import numpy as np

from sknorm import BatchNormalizer

quick = os.environ.get("SKNORM_QUICK") == "1"
n_batches, batch_size = (40, 50) if quick else (400, 50)
ramp_start, ramp_end, jump = n_batches // 4, n_batches // 2, 3 * n_batches // 4


def true_mean(batch):
    if batch < ramp_start:
        return 10.0
    if batch < ramp_end:
        return 10.0 + 20.0 * (batch - ramp_start) / (ramp_end - ramp_start)
    return 30.0 if batch < jump else 0.0


def true_std(batch):
    return 1.0 if batch < jump else 3.0


# %%
# Stream the batches through the three modes.

modes = {
    "exact": BatchNormalizer(),
    "momentum=0.05": BatchNormalizer(momentum=0.05),
    "half_life=500": BatchNormalizer(half_life=500),
}
rng = np.random.default_rng(0)
truth = np.array([(true_mean(b), true_std(b)) for b in range(n_batches)])
running = {name: np.empty((n_batches, 2)) for name in modes}
for b in range(n_batches):
    X = rng.normal(truth[b, 0], truth[b, 1], size=(batch_size, 1))
    for name, norm in modes.items():
        norm.partial_fit(X)
        running[name][b] = norm.mean_[0], norm.scale_[0]

# %%
# The table: mean absolute error of ``mean_`` and ``scale_`` against the
# truth over the whole stream, and the number of batches after the jump until
# ``mean_`` is within one (new) standard deviation of the new mean.


def batches_to_follow(mean):
    close = np.abs(mean[jump:] - truth[jump:, 0]) <= truth[jump:, 1]
    return str(int(np.argmax(close)) + 1) if close.any() else f">{n_batches - jump}"


print(
    f"{n_batches} batches of {batch_size} rows; mean 10 -> ramp to 30 -> jump to "
    f"0 at batch {jump}, std 1 -> 3 at the jump"
)
print(f"{'mode':<16}{'mean_ error':>13}{'scale_ error':>14}{'batches to follow':>19}")
for name, stats in running.items():
    mean_error = np.mean(np.abs(stats[:, 0] - truth[:, 0]))
    scale_error = np.mean(np.abs(stats[:, 1] - truth[:, 1]))
    print(
        f"{name:<16}{mean_error:>13.2f}{scale_error:>14.2f}"
        f"{batches_to_follow(stats[:, 0]):>19}"
    )

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    rows = (np.arange(n_batches) + 1) * batch_size
    fig, (ax_mean, ax_scale) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax_mean.plot(rows, truth[:, 0], "k--", linewidth=1, label="true")
    ax_scale.plot(rows, truth[:, 1], "k--", linewidth=1, label="true")
    for name, stats in running.items():
        ax_mean.plot(rows, stats[:, 0], label=name)
        ax_scale.plot(rows, stats[:, 1], label=name)
    ax_mean.set_ylabel("mean_")
    ax_scale.set_ylabel("scale_")
    ax_scale.set_xlabel("rows streamed")
    ax_mean.legend(loc="upper left", fontsize="small")
    ax_mean.set_title("Running statistics of a drifting feature")
    fig.tight_layout()
    fig.savefig("plot_modes.png", dpi=100)
    print("saved plot_modes.png")
