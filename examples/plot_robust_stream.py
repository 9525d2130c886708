"""
Robust normalization of a stream with gross outliers
====================================================

A stream of 60,000 rows and 8 features of very different scales (1e-1 to
1e5), in which 1 % of the values are gross outliers (100 to 10,000 times the
feature's scale, as from a glitching sensor). Three normalizers feed the same
``MLPClassifier``, trained with ``partial_fit`` batch by batch:

- ``BatchNormalizer``, streamed: mean and standard deviation, which the
  outliers drag far from the bulk of the data;
- ``RobustNormalizer``, streamed: median and interquartile range from
  mergeable quantile sketches, in bounded memory;
- ``RobustScaler`` fitted on all the training data at once: the exact
  median and interquartile range, which a stream cannot have.

Prints the learned center and scale of one feature against the exact values,
the rank error of the streamed medians, and the test accuracy of the MLP
with each normalizer. Saves ``plot_robust_stream.png`` (the center and scale
over the stream) when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a much smaller run.
"""

# %%
import os
import time

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import RobustScaler

from sknorm import BatchNormalizer, RobustNormalizer

quick = os.environ.get("SKNORM_QUICK") == "1"
n_train, n_test, batch, epochs = (
    (6_000, 2_000, 500, 2) if quick else (60_000, 10_000, 500, 5)
)
rng = np.random.default_rng(0)
scales = np.array([1.0, 10.0, 100.0, 1e3, 1e4, 1.0, 0.1, 1e5])
offsets = np.array([0.0, 50.0, -300.0, 1e4, 5e4, 3.0, 0.0, 1e6])
Z = rng.standard_normal((n_train + n_test, scales.size))
y = (Z[:, 0] + Z[:, 1] * Z[:, 2] + np.sin(2 * Z[:, 3]) + Z[:, 7] > 0).astype(int)
X = offsets + scales * Z
# 1 % gross outliers, in training and test data alike.
rows, cols = np.nonzero(rng.random(X.shape) < 0.01)
sign = rng.choice([-1.0, 1.0], rows.size)
X[rows, cols] = offsets[cols] + sign * scales[cols] * 10 ** rng.uniform(2, 4, rows.size)
X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

# %%
# Stream the training data: each normalizer learns from a batch, then the MLP
# learns from the normalized batch. The normalizers learn in the first epoch;
# the MLP sees the data ``epochs`` times.
shown = 4  # the feature whose center and scale are tracked
exact = RobustScaler().fit(X_train)
contenders = {
    "BatchNormalizer (stream)": BatchNormalizer(),
    "RobustNormalizer (stream)": RobustNormalizer(random_state=0),
    "RobustScaler (all data)": exact,
}
results = {}
for name, norm in contenders.items():
    streaming = not isinstance(norm, RobustScaler)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 32), random_state=0)
    history = []
    start = time.perf_counter()
    for epoch in range(epochs):
        for first in range(0, n_train, batch):
            X_batch = X_train[first : first + batch]
            if streaming and epoch == 0:
                norm.partial_fit(X_batch)
                center = (
                    norm.mean_ if isinstance(norm, BatchNormalizer) else norm.center_
                )
                history.append(
                    (first + len(X_batch), center[shown], norm.scale_[shown])
                )
            mlp.partial_fit(
                norm.transform(X_batch), y_train[first : first + batch], classes=[0, 1]
            )
    accuracy = mlp.score(norm.transform(X_test), y_test)
    center = norm.mean_ if isinstance(norm, BatchNormalizer) else norm.center_
    results[name] = (
        center,
        norm.scale_,
        accuracy,
        history,
        time.perf_counter() - start,
    )

# %%
# The streamed medians are approximate: measure the rank they have in the
# training data (0.5 is the exact median).
X_sorted = np.sort(X_train, axis=0)
medians = results["RobustNormalizer (stream)"][0]
ranks = [
    np.searchsorted(X_sorted[:, j], medians[j]) / n_train for j in range(scales.size)
]
rank_error = max(abs(r - 0.5) for r in ranks)

print(
    f"{n_train} training rows x {scales.size} features, 1 % gross outliers, "
    f"batches of {batch}; feature {shown} is {offsets[shown]:g} + "
    f"{scales[shown]:g} N(0, 1)"
)
print(
    f"{'normalizer':<28}{'center':>14}{'scale':>14}{'test accuracy':>15}"
    f"{'time (s)':>10}"
)
for name, (center, scale, accuracy, _, seconds) in results.items():
    print(
        f"{name:<28}{center[shown]:>14.6g}{scale[shown]:>14.6g}"
        f"{accuracy:>15.3f}{seconds:>10.1f}"
    )
print(
    "exact median and IQR of N(0, 1) in these units: "
    f"{offsets[shown]:g}, {1.349 * scales[shown]:.6g}"
)
print(
    f"largest rank error of RobustNormalizer.center_ over the {scales.size} "
    f"features: {rank_error:.3%} (guaranteed <= 0.90 % with 99 % confidence)"
)

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    fig, (ax_center, ax_scale) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("BatchNormalizer (stream)", "RobustNormalizer (stream)"):
        seen, centers, scales_seen = zip(*results[name][3], strict=True)
        ax_center.plot(seen, centers, label=name)
        ax_scale.semilogy(seen, scales_seen, label=name)
    ax_center.axhline(exact.center_[shown], color="k", ls="--", label="RobustScaler")
    ax_scale.axhline(exact.scale_[shown], color="k", ls="--", label="RobustScaler")
    ax_center.set_title(f"center of feature {shown}")
    ax_scale.set_title(f"scale of feature {shown}")
    for ax in (ax_center, ax_scale):
        ax.set_xlabel("rows streamed")
        ax.legend()
    fig.tight_layout()
    fig.savefig("plot_robust_stream.png", dpi=100)
    print("saved plot_robust_stream.png")
