"""Fit on a Dask cluster: sknorm's BatchNormalizer vs dask-ml's StandardScaler.

Both contenders fit the same dask array, held in the memory of a
``distributed.LocalCluster`` (``persist``) so that the time is the fit, not the
generation of the data, with 1 and then 2 worker processes (one thread each).
Each fit runs once; the two contenders alternate. Prints a table of times,
the ratio to BatchNormalizer and the largest relative difference of ``var_``
from a two-pass float64 reference computed by dask.

dask-ml is optional: if it does not install or import, its rows are skipped
and the script says why.

Run by hand::

    python benchmarks/bench_dask.py            # 1.6 GB: 2,000,000 x 100
    python benchmarks/bench_dask.py --quick    # a few MB, for a smoke run
"""

import argparse
import importlib
import platform
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

from sknorm import BatchNormalizer


def contenders():
    """(name, factory) pairs; dask-ml only when it imports."""
    found = [("sknorm BatchNormalizer", BatchNormalizer)]
    try:
        from dask_ml.preprocessing import StandardScaler
    except Exception as exc:  # not installed, or broken against this dask
        print(f"dask-ml skipped: cannot import dask_ml.preprocessing ({exc!r})")
    else:
        found.append(("dask-ml StandardScaler", StandardScaler))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--block-rows", type=int, default=100_000)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.features, args.block_rows = 20_000, 10, 2_000
    gigabytes = args.rows * args.features * 8 / 1e9
    print(
        f"{args.rows:,} rows x {args.features} features of 1000 + 5 N(0, 1) "
        f"({gigabytes:.3g} GB float64), blocks of {args.block_rows:,} rows; "
        f"{platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, dask {dask.__version__}"
    )
    found = contenders()
    rows = []
    for n_workers in (1, 2):
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
            # Time the fits, not the first imports on the workers.
            client.run(importlib.import_module, "sknorm._dask")
            if len(found) > 1:
                client.run(importlib.import_module, "dask_ml.preprocessing")
            rng = da.random.default_rng(0)
            X = 1000.0 + 5.0 * rng.standard_normal(
                (args.rows, args.features), chunks=(args.block_rows, args.features)
            )
            X = X.persist()
            wait(X)
            mean = X.mean(axis=0)
            ref_var = ((X - mean) ** 2).mean(axis=0).compute()
            base = None
            for name, factory in found:
                start = time.perf_counter()
                model = factory().fit(X)
                seconds = time.perf_counter() - start
                base = base or seconds
                var = np.asarray(model.var_)
                err = float(np.max(np.abs(var / ref_var - 1)))
                rows.append((n_workers, name, seconds, seconds / base, err))
    print()
    print(
        f"{'workers':<9}{'contender':<26}{'fit (s)':>9}{'ratio':>8}"
        f"{'var_ rel. err':>15}"
    )
    for n_workers, name, seconds, ratio, err in rows:
        print(f"{n_workers:<9}{name:<26}{seconds:>9.2f}{ratio:>8.2f}{err:>15.1e}")


if __name__ == "__main__":
    main()
