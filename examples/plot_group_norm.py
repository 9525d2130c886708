"""
Per-sample normalization removes a per-sample gain and offset
=============================================================

Signals recorded by different devices or under different conditions often
differ by a gain and an offset per sample (an exposure, a sensor's
calibration, a DC drift). Normalizing each *feature* (``BatchNormalizer``)
cannot undo that; normalizing each *sample* can: ``LayerNormalizer`` removes
one gain and offset per row, ``GroupNormalizer`` one per group of features
(per channel of a multi-channel window: instance normalization).

Two data sets, each streamed in mini-batches through
``make_streaming_pipeline(normalizer, MLPClassifier())``:

- ``load_digits`` (8 x 8 images as rows of 64 pixels) with a random
  contrast (gain 0.1 to 10) and brightness (offset -50 to 50) per image;
  ``GroupNormalizer(n_groups=8)`` normalizes each image row;
- synthetic sensor windows of 3 channels x 32 steps (6 classes of noisy
  waveforms) in which every channel of every window has its own gain and
  offset; ``GroupNormalizer(n_groups=3)`` normalizes each channel.

Prints a table of test accuracy; saves ``plot_group_norm.png`` when
matplotlib is installed. Set ``SKNORM_QUICK=1`` for a smaller run.
"""

# %%
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from sknorm import (
    BatchNormalizer,
    GroupNormalizer,
    LayerNormalizer,
    make_streaming_pipeline,
)

quick = os.environ.get("SKNORM_QUICK") == "1"
n_epochs, n_windows, batch_size = (3, 600, 64) if quick else (20, 1800, 64)
rng = np.random.default_rng(0)

# %%
# Digits with a random contrast and brightness per image.
X_digits, y_digits = load_digits(return_X_y=True)
gain = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(len(X_digits), 1)))
offset = rng.uniform(-50.0, 50.0, size=(len(X_digits), 1))
X_digits = gain * X_digits + offset


# %%
# Sensor windows: each class has its own frequency and phase per channel;
# every window gets noise, a little phase jitter, and a gain and offset per
# channel.
def make_sensor_windows(n_windows, rng, n_channels=3, length=32, n_classes=6):
    t = np.arange(length) / length
    class_rng = np.random.default_rng(42)  # the classes, the same in every run
    freq = class_rng.integers(1, 4, size=(n_classes, n_channels))[..., None]
    phase = class_rng.uniform(0, 2 * np.pi, size=(n_classes, n_channels))[..., None]
    y = rng.integers(0, n_classes, size=n_windows)
    jitter = rng.normal(0.0, 0.3, size=(n_windows, n_channels, 1))
    signal = np.sin(2 * np.pi * freq[y] * t + phase[y] + jitter)
    signal += 1.5 * rng.standard_normal(signal.shape)
    shape = (n_windows, n_channels, 1)
    gain = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=shape))
    offset = rng.uniform(-20.0, 20.0, size=shape)
    # Channel by channel: columns [0, length) are channel 0, and so on.
    return (gain * signal + offset).reshape(n_windows, -1), y


X_sensors, y_sensors = make_sensor_windows(n_windows, rng)

datasets = {
    "digits, gain+offset per image": (X_digits, y_digits, 8),
    "sensors, gain+offset per channel": (X_sensors, y_sensors, 3),
}


# %%
# Stream each training set in shuffled mini-batches for a few epochs.
def stream_fit(model, X, y, rng):
    classes = np.unique(y)
    for _ in range(n_epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            rows = order[start : start + batch_size]
            model.partial_fit(X[rows], y[rows], classes=classes)
    return model


results = []
for data_name, (X, y, n_groups) in datasets.items():
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, stratify=y, random_state=0
    )
    normalizers = {
        "none": "passthrough",
        "BatchNormalizer": BatchNormalizer(),
        "LayerNormalizer": LayerNormalizer(),
        f"GroupNormalizer({n_groups})": GroupNormalizer(n_groups),
    }
    for norm_name, normalizer in normalizers.items():
        model = make_streaming_pipeline(
            normalizer, MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            # Unnormalized data trains badly; that is the point, not a bug.
            warnings.simplefilter("ignore", ConvergenceWarning)
            stream_fit(model, X_train, y_train, np.random.default_rng(1))
        seconds = time.perf_counter() - start
        results.append((data_name, norm_name, model.score(X_test, y_test), seconds))

# %%
print(
    f"Test accuracy of MLPClassifier(64) streamed with partial_fit "
    f"({n_epochs} epochs, batches of {batch_size})"
)
print(f"{'data set':<34}{'normalizer':<20}{'test accuracy':>14}{'time (s)':>10}")
for data_name, norm_name, accuracy, seconds in results:
    print(f"{data_name:<34}{norm_name:<20}{accuracy:>14.3f}{seconds:>10.2f}")

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    fig, (ax_raw, ax_norm, ax_acc) = plt.subplots(1, 3, figsize=(14, 4))
    window = X_sensors[:1]
    normalized = GroupNormalizer(3).fit(window).transform(window)
    length = window.shape[1] // 3
    for channel in range(3):
        cols = slice(channel * length, (channel + 1) * length)
        ax_raw.plot(window[0, cols], label=f"channel {channel}")
        ax_norm.plot(normalized[0, cols])
    ax_raw.set_title("A sensor window as recorded")
    ax_raw.legend(fontsize=7)
    ax_norm.set_title("After GroupNormalizer(3)")
    for ax in (ax_raw, ax_norm):
        ax.set_xlabel("time step")

    # The same four normalizers, in the same order, for every data set.
    labels = ["none", "Batch", "Layer", "Group"]
    width = 0.8 / len(datasets)
    for k, data_name in enumerate(datasets):
        accuracy = [acc for d, _, acc, _ in results if d == data_name]
        ax_acc.bar(np.arange(len(labels)) + k * width, accuracy, width, label=data_name)
    ax_acc.set_xticks(np.arange(len(labels)) + width * (len(datasets) - 1) / 2)
    ax_acc.set_xticklabels(labels)
    ax_acc.set_xlabel("normalizer (Group: one group per image row / channel)")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(fontsize=8, loc="upper left")
    ax_acc.set_title("MLPClassifier, streamed")
    fig.tight_layout()
    fig.savefig("plot_group_norm.png", dpi=100)
    print("saved plot_group_norm.png")
