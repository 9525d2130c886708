"""
Streaming an MLP through a drifting stream
==========================================

A stream of sensor readings arrives in mini-batches, too many to hold in
memory: a generator yields them one batch at a time. Four sensors measure a
hidden state ``z`` in their own units (``x = offset + gain * z``, gains from
0.1 to 2000), and the class is ``(z0 + z2 > 0) XOR (z1 + z3 > 0)``. Half way
through the stream the sensors are recalibrated: offsets and gains change, the
concept does not.

Each model is a ``make_streaming_pipeline(..., MLPClassifier(...))`` learned
with ``partial_fit``, and is scored prequentially (test-then-train): every
batch is first predicted, then learned. Compared:

- no normalization;
- a ``StandardScaler`` fitted once on the first batch (then frozen);
- ``BatchNormalizer()``: exact statistics of everything seen;
- ``BatchNormalizer(momentum=0.05)``: PyTorch-style running statistics;
- ``BatchNormalizer(half_life=1000)``: a sample 1000 rows old weighs half.

The exact statistics mix the two calibrations after the drift; the forgetting
modes follow the new one within a few batches, so their MLP keeps its
accuracy. Prints progress while it runs and a table of prequential accuracy;
saves ``plot_streaming_mlp.png`` when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a smaller run.
"""

# %%
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer, make_streaming_pipeline

quick = os.environ.get("SKNORM_QUICK") == "1"
n_batches, batch_size = (40, 50) if quick else (400, 100)
drift_at = n_batches // 2
CLASSES = np.array([0, 1])

# %%
# The stream: a generator, so the rows never sit in memory together.

OFFSET_BEFORE = np.array([3.0, 5000.0, 0.5, 200.0])
GAIN_BEFORE = np.array([1.0, 2000.0, 0.1, 50.0])
OFFSET_AFTER = np.array([-2.0, 12000.0, 0.8, 150.0])
GAIN_AFTER = np.array([2.0, 5000.0, 0.05, 120.0])


def sensor_stream(seed=0):
    """Yield ``(X, y)`` mini-batches; the sensors are recalibrated at drift_at."""
    rng = np.random.default_rng(seed)
    for i in range(n_batches):
        z = rng.standard_normal((batch_size, 4))
        y = ((z[:, 0] + z[:, 2] > 0) ^ (z[:, 1] + z[:, 3] > 0)).astype(int)
        if i < drift_at:
            yield OFFSET_BEFORE + GAIN_BEFORE * z, y
        else:
            yield OFFSET_AFTER + GAIN_AFTER * z, y


# %%
# The models. They all see the same stream, batch by batch, in one pass.


def mlp():
    return MLPClassifier(
        hidden_layer_sizes=(32,), learning_rate_init=3e-3, random_state=0
    )


stream = sensor_stream()
X_first, y_first = next(stream)
models = {
    "no normalization": make_streaming_pipeline(mlp()),
    "StandardScaler (1st batch)": make_streaming_pipeline(
        FrozenEstimator(StandardScaler().fit(X_first)), mlp()
    ),
    "exact": make_streaming_pipeline(BatchNormalizer(), mlp()),
    "momentum=0.05": make_streaming_pipeline(BatchNormalizer(momentum=0.05), mlp()),
    "half_life=1000": make_streaming_pipeline(BatchNormalizer(half_life=1000), mlp()),
}
accuracy = {name: [] for name in models}
seconds = dict.fromkeys(models, 0.0)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for model in models.values():
        model.partial_fit(X_first, y_first, classes=CLASSES)
    for i, (X, y) in enumerate(stream, start=1):
        for name, model in models.items():
            start = time.perf_counter()
            accuracy[name].append(model.score(X, y))  # test, then train
            model.partial_fit(X, y)
            seconds[name] += time.perf_counter() - start
        if i % max(1, n_batches // 10) == 0:
            recent = "  ".join(
                f"{name} {np.mean(acc[-10:]):.2f}" for name, acc in accuracy.items()
            )
            print(
                f"batch {i:>4}/{n_batches - 1} | last 10 batches: {recent}", flush=True
            )

# %%
# The table: mean prequential accuracy before the drift, over the batches
# right after it, and at the end of the stream. ``accuracy[name][k]`` is the
# score on batch ``k + 1`` (batch 0 was only learned).

window = max(2, n_batches // 20)
before = slice(drift_at - 1 - window, drift_at - 1)
right_after = slice(drift_at - 1, drift_at - 1 + window)
end = slice(-window, None)
print(
    f"\n{n_batches} batches of {batch_size} rows, sensors recalibrated at batch "
    f"{drift_at}; mean prequential accuracy over {window} batches"
)
header = (
    f"{'model':<28}{'before drift':>14}{'right after':>13}{'end':>8}{'time (s)':>10}"
)
print(header)
for name, acc in accuracy.items():
    acc = np.asarray(acc)
    print(
        f"{name:<28}{acc[before].mean():>14.3f}{acc[right_after].mean():>13.3f}"
        f"{acc[end].mean():>8.3f}{seconds[name]:>10.1f}"
    )

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    fig, ax = plt.subplots(figsize=(7, 4))
    smooth = np.ones(window) / window
    for name, acc in accuracy.items():
        rows = (np.arange(window, len(acc) + 1)) * batch_size
        ax.plot(rows, np.convolve(acc, smooth, mode="valid"), label=name)
    ax.axvline(drift_at * batch_size, color="gray", linestyle=":", linewidth=1)
    ax.text(drift_at * batch_size, 0.25, " recalibration", color="gray")
    ax.set_xlabel("rows streamed")
    ax.set_ylabel(f"prequential accuracy ({window}-batch mean)")
    ax.set_ylim(0.2, 1.0)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig("plot_streaming_mlp.png", dpi=100)
    print("saved plot_streaming_mlp.png")
