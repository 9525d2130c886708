"""
Normalization lets an MLP see every feature
===========================================

When one feature ranges over 1-5 and another over 100-10000, the large one
dominates the first layer of a neural network: its gradients are thousands of
times larger, and the small feature is all but ignored. This example trains
``MLPClassifier`` epoch by epoch, with ``partial_fit`` on mini-batches, on
three data sets:

- ``1-5 vs 100-10000``: two uniform features, ``a`` in [1, 5] and ``b`` in
  [100, 10000]; the class is ``(a > 3) XOR (b > 5050)``, so both matter;
- ``digits, rescaled``: ``load_digits`` with each of the 64 pixels multiplied
  by its own factor between 0.1 and 10000;
- ``breast cancer``: ``load_breast_cancer`` as it is (the largest value of
  a feature ranges from 0.03 to 4254).

Three models are compared: the MLP alone, the MLP behind a ``BatchNormalizer``
that learns its statistics from the same mini-batches
(``make_streaming_pipeline``), and, as a reference, the MLP behind a
``StandardScaler`` fitted beforehand on all the training data. It prints the
test accuracy after the last epoch and the number of epochs needed to reach a
target test accuracy; saves ``plot_feature_dominance.png`` (test accuracy per
epoch) when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a smaller run.
"""

# %%
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer, make_streaming_pipeline

quick = os.environ.get("SKNORM_QUICK") == "1"
n_epochs = 3 if quick else 30
batch_size = 64
target = 0.90
rng = np.random.default_rng(0)

# %%
# The data sets.


def small_vs_large(n_samples):
    a = rng.uniform(1.0, 5.0, n_samples)
    b = rng.uniform(100.0, 10_000.0, n_samples)
    y = ((a > 3.0) ^ (b > 5050.0)).astype(int)
    return np.column_stack([a, b]), y


def digits_rescaled():
    X, y = load_digits(return_X_y=True)
    return X * 10.0 ** rng.uniform(-1.0, 4.0, X.shape[1]), y


datasets = {
    "1-5 vs 100-10000": small_vs_large(600 if quick else 3000),
    "digits, rescaled": digits_rescaled(),
    "breast cancer": load_breast_cancer(return_X_y=True),
}
if quick:
    datasets = {name: (X[:600], y[:600]) for name, (X, y) in datasets.items()}

# %%
# Train each model epoch by epoch on shuffled mini-batches, and measure the
# test accuracy after every epoch.


def make_model(kind, X_train):
    mlp = MLPClassifier(hidden_layer_sizes=(32,), random_state=0)
    if kind == "MLP alone":
        return make_streaming_pipeline(mlp)
    if kind == "BatchNormalizer + MLP":
        return make_streaming_pipeline(BatchNormalizer(), mlp)
    # fitted once on all the training data, then kept fixed
    return make_streaming_pipeline(FrozenEstimator(StandardScaler().fit(X_train)), mlp)


def train(model, X_train, y_train, X_test, y_test):
    classes = np.unique(y_train)
    order = np.random.default_rng(1)
    accuracy = []
    for _ in range(n_epochs):
        rows = order.permutation(len(y_train))
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            model.partial_fit(X_train[batch], y_train[batch], classes=classes)
        accuracy.append(model.score(X_test, y_test))
    return accuracy


kinds = ["MLP alone", "BatchNormalizer + MLP", "StandardScaler (all data) + MLP"]
results = {}
for data_name, (X, y) in datasets.items():
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    for kind in kinds:
        start = time.perf_counter()
        with warnings.catch_warnings():
            # the unnormalized MLP may warn about convergence; that is the point
            warnings.simplefilter("ignore", ConvergenceWarning)
            accuracy = train(
                make_model(kind, X_train), X_train, y_train, X_test, y_test
            )
        results[data_name, kind] = (accuracy, time.perf_counter() - start)

# %%
# The table: test accuracy after the last epoch, and the first epoch at which
# the test accuracy reached the target.


def epochs_to(accuracy, level):
    reached = [epoch for epoch, acc in enumerate(accuracy, 1) if acc >= level]
    return str(reached[0]) if reached else f">{len(accuracy)}"


print(
    f"MLPClassifier(hidden_layer_sizes=(32,)), {n_epochs} epochs of "
    f"mini-batches of {batch_size}"
)
header = (
    f"{'data set':<18}{'model':<33}{'test accuracy':>14}"
    f"{f'epochs to {target:.0%}':>15}{'time (s)':>10}"
)
print(header)
for (data_name, kind), (accuracy, seconds) in results.items():
    print(
        f"{data_name:<18}{kind:<33}{accuracy[-1]:>14.3f}"
        f"{epochs_to(accuracy, target):>15}{seconds:>10.1f}"
    )

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5))
    for ax, data_name in zip(axes, datasets, strict=True):
        for kind, style in zip(kinds, ["-", "-", "--"], strict=True):
            accuracy = results[data_name, kind][0]
            ax.plot(range(1, n_epochs + 1), accuracy, style, marker=".", label=kind)
        ax.axhline(target, color="gray", linestyle=":", linewidth=1)
        ax.set_title(data_name)
        ax.set_xlabel("epoch")
        ax.set_ylim(0.0, 1.0)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig("plot_feature_dominance.png", dpi=100)
    print("saved plot_feature_dominance.png")
