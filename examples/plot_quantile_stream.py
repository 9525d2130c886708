"""
Quantile normalization of a heavy-tailed stream for an MLP
==========================================================

A stream of tabular rows with 6 skewed, heavy-tailed features (lognormal,
Pareto, Student t with 1.5 degrees of freedom, exponential, a skewed
mixture, and a feature with many repeated values) feeds an ``MLPRegressor``
trained with ``partial_fit`` batch by batch. The target depends on where each
value sits in its feature's distribution, tails included. Five
normalizations are compared:

- ``BatchNormalizer`` (stream): mean and standard deviation, which heavy
  tails make nearly useless (most values end up squeezed near 0);
- ``RobustNormalizer`` (stream): median and interquartile range, robust but
  still leaving the tails far out;
- ``QuantileNormalizer`` (stream), uniform and normal outputs: the mapping of
  scikit-learn's ``QuantileTransformer``, learned in one pass, in memory that
  grows logarithmically, with accurate tails;
- ``QuantileTransformer(output_distribution="normal")`` fitted offline on all
  the training data at once (scikit-learn's default subsample of 10,000 rows).

Prints the test R^2 of the MLP with each normalizer and the largest distance
between the streamed normal mapping and the exact offline one
(``QuantileTransformer(subsample=None)``) in the body and in the tails. Saves
``plot_quantile_stream.png`` (the learned mapping of one feature against the
offline one, with both tails zoomed in) when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a much smaller run.
"""

# %%
import os
import time

import numpy as np
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import QuantileTransformer

from sknorm import BatchNormalizer, RobustNormalizer
from sknorm._quantile import QuantileNormalizer

quick = os.environ.get("SKNORM_QUICK") == "1"
n_train, n_test, batch, epochs = (
    (5_000, 2_000, 500, 1) if quick else (60_000, 20_000, 500, 2)
)
rng = np.random.default_rng(0)
n = n_train + n_test
X = np.column_stack(
    [
        rng.lognormal(0, 2, n),
        rng.pareto(1.2, n) + 1,
        rng.standard_t(1.5, n),
        rng.exponential(5, n),
        np.where(
            rng.random(n) < 0.8, rng.lognormal(0, 1, n), 1e3 * rng.lognormal(0, 1, n)
        ),
        rng.poisson(3, n).astype(float),
    ]
)
# The target: a smooth function of each value's rank (its normal score),
# with the tails mattering as much as the body.
scores = QuantileTransformer(
    n_quantiles=1000, subsample=None, output_distribution="normal"
).fit_transform(X)
y = (
    np.sin(scores[:, 0])
    + 0.5 * scores[:, 1] ** 2
    - np.abs(scores[:, 2])
    + scores[:, 3] * scores[:, 4] / 2
    + 0.3 * scores[:, 5]
    + 0.1 * rng.standard_normal(n)
)
X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

# %%
# Stream the training data: each normalizer learns from a batch, then the MLP
# learns from the normalized batch. The normalizers learn in the first epoch;
# the MLP sees the data ``epochs`` times.
contenders = {
    "BatchNormalizer (stream)": BatchNormalizer(),
    "RobustNormalizer (stream)": RobustNormalizer(random_state=0),
    "QuantileNormalizer uniform": QuantileNormalizer(random_state=0),
    "QuantileNormalizer normal": QuantileNormalizer(
        output_distribution="normal", random_state=0
    ),
    "QuantileTransformer (offline)": QuantileTransformer(
        output_distribution="normal", random_state=0
    ).fit(X_train),
}
results = {}
for name, norm in contenders.items():
    streaming = not isinstance(norm, QuantileTransformer)
    mlp = MLPRegressor(hidden_layer_sizes=(64, 64), random_state=0)
    start = time.perf_counter()
    for epoch in range(epochs):
        for first in range(0, n_train, batch):
            X_batch = X_train[first : first + batch]
            if streaming and epoch == 0:
                norm.partial_fit(X_batch)
            mlp.partial_fit(norm.transform(X_batch), y_train[first : first + batch])
    results[name] = (
        mlp.score(norm.transform(X_test), y_test),
        time.perf_counter() - start,
    )

# %%
# How close is the streamed normal mapping to the exact offline one? The
# largest difference, over the training values of each band of true rank.
exact = QuantileTransformer(
    n_quantiles=1000, subsample=None, output_distribution="normal"
).fit(X_train)
streamed = contenders["QuantileNormalizer normal"]
offline = contenders["QuantileTransformer (offline)"]
X_sorted = np.sort(X_train, axis=0)
bands = {
    "tails (0.1-1 %)": [(0.001, 0.01), (0.99, 0.999)],
    "body (1-99 %)": [(0.01, 0.99)],
}
distance = {}
for band, ranges in bands.items():
    rows = np.concatenate(
        [np.arange(int(a * n_train), int(b * n_train)) for a, b in ranges]
    )
    points = X_sorted[rows]
    reference = exact.transform(points)
    distance[band] = [
        np.abs(est.transform(points) - reference).max() for est in (streamed, offline)
    ]

print(
    f"{n_train} training rows x {X.shape[1]} heavy-tailed features, batches of "
    f"{batch}, {epochs} epoch(s)"
)
print(f"{'normalizer':<32}{'test R^2':>10}{'time (s)':>10}")
for name, (score, seconds) in results.items():
    print(f"{name:<32}{score:>10.3f}{seconds:>10.1f}")
print("largest |normal output - QuantileTransformer(subsample=None)'s|:")
print(f"{'band':<18}{'QuantileNormalizer':>20}{'QT (subsample 10k)':>20}")
for band, (ours, theirs) in distance.items():
    print(f"{band:<18}{ours:>20.4f}{theirs:>20.4f}")

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    shown = 0  # the lognormal feature
    column = X_sorted[:, shown]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    zooms = [
        ("whole range", slice(None)),
        ("lowest 1 %", slice(0, max(n_train // 100, 10))),
        ("highest 1 %", slice(n_train - max(n_train // 100, 10), None)),
    ]
    for ax, (title, part) in zip(axes, zooms, strict=True):
        values = column[part]
        probe = np.zeros((values.size, X.shape[1]))
        probe[:, shown] = values
        for label, est, style in (
            ("QuantileTransformer(subsample=None)", exact, "k-"),
            ("QuantileNormalizer (stream)", streamed, "C0--"),
            ("QuantileTransformer (subsample 10k)", offline, "C1:"),
        ):
            ax.plot(values, est.transform(probe)[:, shown], style, label=label)
        ax.set_xscale("log")
        ax.set_title(f"feature {shown} (lognormal): {title}")
        ax.set_xlabel("value")
    axes[0].set_ylabel("normal output")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig("plot_quantile_stream.png", dpi=100)
    print("saved plot_quantile_stream.png")
