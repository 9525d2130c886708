"""
A mixed-type tabular stream, read in chunks from a CSV file
===========================================================

A stream of customer records, as it would come from a database export:
five numeric columns on scales from 1 to 1e6, two categorical columns, 5 %
of all values missing, and drift (the numbers grow and the categories'
shares shift along the stream). The example writes it to a CSV file and
reads it back with ``pandas.read_csv(chunksize=...)``, one chunk at a time,
through a :class:`~sknorm.StreamingPipeline`:

- a :class:`~sknorm.StreamingColumnTransformer` that imputes and normalizes
  the numeric columns (:class:`~sknorm.StreamingImputer` then
  :class:`~sknorm.BatchNormalizer`, both learned from the stream) and
  imputes and one-hot encodes the categorical ones (a ``OneHotEncoder``
  given its categories, fitted on the first chunk by itself);
- an ``MLPClassifier`` that learns with ``partial_fit``.

Each chunk is first predicted, then learned from (prequential accuracy).
The streamed model is also scored, every few chunks, on the last part of
the file (held out), against the same model fitted offline on all the
streamed rows at once (SimpleImputer, StandardScaler, OneHotEncoder and an
MLP trained for several epochs). Prints a table and saves
``plot_tabular_stream.png`` when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a much smaller run.
"""

# %%
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sknorm import (
    BatchNormalizer,
    StreamingImputer,
    make_streaming_column_transformer,
    make_streaming_pipeline,
)

quick = os.environ.get("SKNORM_QUICK") == "1"
n_rows, chunk, n_reports = (8_000, 250, 4) if quick else (80_000, 500, 8)
rng = np.random.default_rng(0)

# %%
# The stream: the numeric columns' typical sizes span six orders of
# magnitude, and drift upward along the stream; the label depends on the
# numbers relative to their typical size and on the categories.
REGIONS = ["north", "south", "east", "west", "centre"]
DEVICES = ["mobile", "desktop", "tablet"]
time_share = np.linspace(0.0, 1.0, n_rows)
scales = {
    "age": 10.0,
    "visits": 1.0,
    "session_ms": 1e3,
    "income": 1e5,
    "balance": 1e6,
}
Z = rng.standard_normal((n_rows, len(scales)))
drift = 1.0 + 0.5 * time_share  # everything grows by half over the stream
numeric = {
    name: scale * (3.0 + Z[:, j]) * drift
    for j, (name, scale) in enumerate(scales.items())
}
region_shares = np.outer(1 - time_share, [0.4, 0.3, 0.1, 0.1, 0.1]) + np.outer(
    time_share, [0.1, 0.1, 0.2, 0.3, 0.3]
)
region = np.array(
    [REGIONS[i] for i in (region_shares.cumsum(1) > rng.random((n_rows, 1))).argmax(1)]
)
device = rng.choice(DEVICES, n_rows, p=[0.6, 0.3, 0.1])
region_effect = dict(zip(REGIONS, [1.0, -1.0, 0.5, -0.5, 0.0], strict=True))
score = (
    Z[:, 3]
    + 0.8 * Z[:, 4] * np.sign(Z[:, 0])
    - 0.6 * Z[:, 2] ** 2
    + np.vectorize(region_effect.get)(region)
    + 0.7 * (device == "mobile")
    + 0.3 * rng.standard_normal(n_rows)
)
frame = pd.DataFrame({**numeric, "region": region, "device": device})
frame["label"] = (score > np.median(score)).astype(int)
features = [c for c in frame.columns if c != "label"]
holes = rng.random((n_rows, len(features))) < 0.05
frame[features] = frame[features].mask(holes)
path = "tabular_stream.csv"
frame.to_csv(path, index=False)

n_test = n_rows // 5  # the last rows of the file: held out
n_stream = n_rows - n_test
test = frame.iloc[n_stream:]
X_test, y_test = test[features], test["label"].to_numpy()
numeric_columns, categorical_columns = list(scales), ["region", "device"]

# %%
# The streamed model: every step learns from the chunks.


def mlp():
    return MLPClassifier(hidden_layer_sizes=(32, 16), random_state=0)


streamed = make_streaming_pipeline(
    make_streaming_column_transformer(
        (
            make_streaming_pipeline(StreamingImputer(), BatchNormalizer()),
            numeric_columns,
        ),
        (
            make_streaming_pipeline(
                StreamingImputer(strategy="most_frequent"),
                OneHotEncoder(
                    categories=[REGIONS, DEVICES],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
            ),
            categorical_columns,
        ),
    ),
    mlp(),
)

report_every = max(1, n_stream // chunk // n_reports)
rows = []  # (rows streamed, prequential accuracy since last report, test accuracy)
hits = predicted = seen = index = 0
start = time.perf_counter()
for part in pd.read_csv(path, chunksize=chunk):
    if seen >= n_stream:
        break
    part = part.iloc[: n_stream - seen]
    X, y = part[features], part["label"].to_numpy()
    if seen:  # predict the chunk before learning from it
        hits += int((streamed.predict(X) == y).sum())
        predicted += len(y)
    streamed.partial_fit(X, y, classes=[0, 1])
    seen += len(part)
    index += 1
    if index % report_every == 0 or seen == n_stream:
        prequential = hits / predicted if predicted else np.nan
        rows.append((seen, prequential, streamed.score(X_test, y_test)))
        hits = predicted = 0
stream_seconds = time.perf_counter() - start

# %%
# The same model fitted offline, on all the streamed rows at once.
start = time.perf_counter()
offline = make_pipeline(
    make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric_columns),
        (
            make_pipeline(
                SimpleImputer(strategy="most_frequent"),
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            ),
            categorical_columns,
        ),
    ),
    MLPClassifier(hidden_layer_sizes=(32, 16), random_state=0, max_iter=50),
)
stream_part = frame.iloc[:n_stream]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # capped at 50 epochs
    offline.fit(stream_part[features], stream_part["label"])
offline_accuracy = offline.score(X_test, y_test)
offline_seconds = time.perf_counter() - start

print(
    f"{n_rows} rows ({n_stream} streamed in chunks of {chunk} from {path}, "
    f"{n_test} held out); 5 numeric columns on scales 1 to 1e6, 2 categorical, "
    "5 % missing, drift"
)
print(f"{'rows streamed':>14}{'prequential accuracy':>23}{'test accuracy':>16}")
for seen, prequential, accuracy in rows:
    print(f"{seen:>14,}{prequential:>23.3f}{accuracy:>16.3f}")
print(
    f"streamed: {stream_seconds:.1f} s; offline (SimpleImputer, StandardScaler, "
    f"OneHotEncoder, MLP, up to 50 epochs): test accuracy {offline_accuracy:.3f} "
    f"in {offline_seconds:.1f} s"
)
normalizer = streamed[0].named_transformers_["streamingpipeline-1"][-1]
imputer = streamed[0].named_transformers_["streamingpipeline-1"][0]
print(
    f"learned from the stream: imputation of balance {imputer.statistics_[-1]:,.0f} "
    f"(mean of its observed values: {stream_part['balance'].mean():,.0f}); "
    f"normalizer mean_ of balance {normalizer.mean_[-1]:,.0f} (its imputed "
    "values are the running means at their time)"
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
    seen, prequential, accuracy = zip(*rows, strict=True)
    ax.plot(seen, accuracy, "o-", label="streamed model, held-out rows")
    ax.plot(seen, prequential, "s--", label="streamed model, next chunks")
    ax.axhline(offline_accuracy, color="k", ls=":", label="offline model, held-out")
    ax.set_xlabel("rows streamed")
    ax.set_ylabel("accuracy")
    ax.set_title("MLP on a drifting mixed-type CSV stream")
    ax.legend()
    fig.tight_layout()
    fig.savefig("plot_tabular_stream.png", dpi=100)
    print("saved plot_tabular_stream.png")
