"""
Fitting on a Dask cluster
=========================

Fit ``BatchNormalizer`` on a dask array of 4 GB (5,000,000 rows x 100
features of ``1000 + 5 N(0, 1)``) that is generated lazily on the workers of a
``distributed.LocalCluster``, one 80 MB block at a time: the data never exists
all at once, anywhere. Each worker reduces its blocks to sufficient
statistics of 100 numbers each, which are merged in a tree; only the final
statistics reach this process. Then ``transform`` returns a lazy dask array,
whose mean and standard deviation per feature are computed on the workers.

Prints the time of fit and of transform (with the reduction) for 1 and 2
worker processes, and the largest relative difference between ``mean_`` /
``var_`` and dask's own ``mean`` / ``var`` of the same array. Saves
``plot_dask_cluster.png`` when matplotlib is installed.

The full run takes about 2 minutes on 2 cores (the data is generated again for
every pass; the times exclude starting the workers). Set ``SKNORM_QUICK=1``
for a tiny run of a few seconds. Needs the dask extra:
``pip install "sknorm[dask]"``.
"""

# %%
import importlib
import os
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

from sknorm import BatchNormalizer

quick = os.environ.get("SKNORM_QUICK") == "1"
n_rows, n_features, rows_per_block = (
    (40_000, 8, 5_000) if quick else (5_000_000, 100, 100_000)
)


def make_data():
    """``1000 + 5 N(0, 1)``, defined lazily: each block is drawn by a worker."""
    rng = da.random.default_rng(0)
    X = rng.standard_normal((n_rows, n_features), chunks=(rows_per_block, n_features))
    return 1000.0 + 5.0 * X


# %%
# One run per cluster size: fit (one pass over the data), then transform and
# reduce the normalized data to its per-feature mean and standard deviation
# (a second pass). Both passes generate the blocks again on the workers.


def run(n_workers):
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Time the work, not the start-up: import sknorm on every worker first.
        client.run(importlib.import_module, "sknorm._dask")
        X = make_data()
        start = time.perf_counter()
        norm = BatchNormalizer().fit(X)
        fit_time = time.perf_counter() - start

        start = time.perf_counter()
        Z = norm.transform(X)  # lazy: nothing is computed yet
        z_mean, z_std = dask.compute(Z.mean(axis=0), Z.std(axis=0))
        transform_time = time.perf_counter() - start

        ref_mean, ref_var = dask.compute(X.mean(axis=0), X.var(axis=0))
    return {
        "fit": fit_time,
        "transform": transform_time,
        "mean_err": float(np.max(np.abs(norm.mean_ / ref_mean - 1))),
        "var_err": float(np.max(np.abs(norm.var_ / ref_var - 1))),
        "z_mean": float(np.max(np.abs(z_mean))),
        "z_std": float(np.max(np.abs(z_std - 1))),
    }


# %%
# The table, and a plot of the times.


def main():
    gigabytes = n_rows * n_features * 8 / 1e9
    print(
        f"{n_rows:,} rows x {n_features} features ({gigabytes:.3g} GB of float64), "
        f"blocks of {rows_per_block:,} rows, generated on the workers"
    )
    results = {n_workers: run(n_workers) for n_workers in (1, 2)}
    print(
        f"{'workers':<9}{'fit (s)':>9}{'transform (s)':>15}{'fit GB/s':>10}"
        f"{'mean_ vs dask':>15}{'var_ vs dask':>14}"
    )
    for n_workers, r in results.items():
        print(
            f"{n_workers:<9}{r['fit']:>9.2f}{r['transform']:>15.2f}"
            f"{gigabytes / r['fit']:>10.2f}{r['mean_err']:>15.1e}{r['var_err']:>14.1e}"
        )
    worst = results[2]
    print(
        f"normalized data: max |mean| = {worst['z_mean']:.1e}, "
        f"max |std - 1| = {worst['z_std']:.1e}"
    )

    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    workers = list(results)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    width = 0.35
    x = np.arange(len(workers))
    ax.bar(x - width / 2, [results[w]["fit"] for w in workers], width, label="fit")
    ax.bar(
        x + width / 2,
        [results[w]["transform"] for w in workers],
        width,
        label="transform + reduce",
    )
    ax.set_xticks(x, [str(w) for w in workers])
    ax.set_xlabel("worker processes")
    ax.set_ylabel("time (s)")
    ax.set_title(f"BatchNormalizer on dask, {gigabytes:.3g} GB")
    ax.legend()
    fig.tight_layout()
    fig.savefig("plot_dask_cluster.png", dpi=100)


# Worker processes import this script again: start clusters only when run.
if __name__ == "__main__":
    main()
