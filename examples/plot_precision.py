"""
Streaming without losing digits
===============================

Stream 200,000 rows of ``1e9 + N(0, 1)`` (64 features) in batches of 64 and
compare the running variance with an exact reference (two-pass in long
double). ``StandardScaler.partial_fit`` merges raw means and loses digits on
every batch; ``BatchNormalizer`` keeps its moments relative to an anchor and
stays as exact as a one-shot fit. Prints a table; saves ``plot_precision.png``
when matplotlib is installed.

Set ``SKNORM_QUICK=1`` for a smaller run.
"""

# %%
import os
import time

import numpy as np
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer

quick = os.environ.get("SKNORM_QUICK") == "1"
n_rows, n_features, batch = (20_000 if quick else 200_000), 64, 64
rng = np.random.default_rng(0)
X = 1e9 + rng.standard_normal((n_rows, n_features))

# %%
# Exact reference: two passes in long double.
Xl = X.astype(np.longdouble)
mean_ref = Xl.mean(axis=0)
var_ref = ((Xl - mean_ref) ** 2).mean(axis=0)


def max_rel_err(var):
    return float(np.max(np.abs((var - var_ref) / var_ref)))


results = {}
for name, est in [
    ("StandardScaler", StandardScaler()),
    ("BatchNormalizer", BatchNormalizer()),
]:
    start = time.perf_counter()
    history = []
    for i, start_row in enumerate(range(0, n_rows, batch)):
        est.partial_fit(X[start_row : start_row + batch])
        if i % 50 == 0:
            history.append((start_row + batch, max_rel_err(est.var_)))
    results[name] = (max_rel_err(est.var_), time.perf_counter() - start, history)
results["StandardScaler (one-shot fit)"] = (
    max_rel_err(StandardScaler().fit(X).var_),
    float("nan"),
    [],
)

# %%
print(f"{n_rows} rows x {n_features} features of 1e9 + N(0, 1), batches of {batch}")
print(f"{'method':<32}{'max rel. error of var_':>24}{'time (s)':>10}")
for name, (err, seconds, _) in results.items():
    print(f"{name:<32}{err:>24.2e}{seconds:>10.2f}")

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("StandardScaler", "BatchNormalizer"):
        rows, errs = zip(*results[name][2], strict=True)
        ax.loglog(rows, np.maximum(errs, 1e-17), label=f"{name}.partial_fit")
    ax.set_xlabel("rows streamed")
    ax.set_ylabel("max relative error of var_")
    ax.set_title("Running variance of 1e9 + N(0, 1)")
    ax.legend()
    fig.tight_layout()
    fig.savefig("plot_precision.png", dpi=100)
    print("saved plot_precision.png")
