"""QuantileNormalizer against QuantileTransformer: accuracy, memory and speed.

Three parts, all in one process:

1. **Sketch accuracy** (``sknorm._req`` alone, size ``k``): streams of
   ``--rows`` rows of seven hard columns (normal, lognormal, Cauchy, a
   two-mode mixture, sorted, reverse-sorted, heavy duplicates) in batches of
   ``--batch`` rows; for each quantile level ``q`` the largest error, over
   columns and seeds, of the rank of the returned value, relative to
   ``min(q, 1 - q) n``, beside the stated 99 % bound and the KLL sketch of
   ``RobustNormalizer`` (``k = 512``).
2. **Estimator accuracy**: per column and band of true rank ([0.001, 0.01],
   [0.01, 0.99], [0.99, 0.999], both tails together in the first and last),
   the largest absolute difference between an estimator's output and that of
   ``QuantileTransformer(n_quantiles=1000, subsample=None)`` fitted on all
   rows, evaluated at the values of ranks spread through the band; the
   median over ``--seeds`` seeds. Contenders: ``QuantileNormalizer`` (learned
   with ``partial_fit``) and scikit-learn's default ``QuantileTransformer``
   (``subsample=10_000``, fitted on all rows), normal and uniform outputs;
   for the uniform output also the stated bound (rank bound plus one spacing
   of the references).
3. **Memory and speed**: values kept per feature; ``partial_fit`` on batches
   of 1,024 x 64 against ``BatchNormalizer.partial_fit`` (interleaved
   rounds after a warm-up of ``--warmup`` rows, median of per-round ratios);
   ``fit`` on ``--fit-rows`` x 64 against ``QuantileTransformer`` with
   ``subsample=None`` and with the default.

Run ``python benchmarks/bench_quantile.py`` (10**6 rows, a few minutes) or
``--quick`` for a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time

import numpy as np
import sklearn
from sklearn.preprocessing import QuantileTransformer

from sknorm import BatchNormalizer, _kll, _req
from sknorm._quantile import QuantileNormalizer

QUANTILES = np.array([1e-3, 3e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.997, 0.999])


def columns(n, seed):
    """Seven hard streams of n rows (one per column) and their names."""
    rng = np.random.default_rng(seed)
    mixture = np.where(rng.random(n) < 0.7, rng.normal(0, 1, n), rng.normal(8, 0.5, n))
    data = {
        "normal": rng.standard_normal(n),
        "lognormal": rng.lognormal(0, 1.5, n),
        "cauchy": rng.standard_cauchy(n),
        "mixture": mixture,
        "sorted": np.sort(rng.standard_normal(n)),
        "reverse-sorted": np.sort(rng.standard_normal(n))[::-1],
        "duplicates": rng.integers(0, 20, n).astype(np.float64),
    }
    return np.column_stack(list(data.values())), list(data)


def relative_rank_errors(X_sorted, values, q):
    """|rank interval of value - q n| / (min(q, 1 - q) n), per column."""
    n = X_sorted.shape[0]
    out = []
    for j, value in enumerate(values):
        below = np.searchsorted(X_sorted[:, j], value, side="left")
        at_or_below = np.searchsorted(X_sorted[:, j], value, side="right")
        out.append(max(below - q * n, q * n - at_or_below, 0) / (min(q, 1 - q) * n))
    return np.array(out)


def sketch_study(args, data):
    k = args.sketch_size
    worst = {"req": np.zeros(QUANTILES.size), "kll": np.zeros(QUANTILES.size)}
    kept = {}
    for X, X_sorted, _ in data:
        n = X.shape[0]
        req = _req.empty_sketch(X.shape[1], k, 0)
        kll = _kll.empty_sketch(X.shape[1], 512, 0)
        for start in range(0, n, args.batch):
            req = _req.update_sketch(req, X[start : start + args.batch])
            kll = _kll.update_sketch(kll, X[start : start + args.batch])
        kept = {"req": _req.retained_items(req).max(), "kll": kll.counts.sum(0).max()}
        for name, sketch, module in (("req", req, _req), ("kll", kll, _kll)):
            estimates = module.sketch_quantiles(sketch, QUANTILES)
            for i, q in enumerate(QUANTILES):
                errors = relative_rank_errors(X_sorted, estimates[i], q)
                worst[name][i] = max(worst[name][i], errors.max())
    n = data[0][0].shape[0]
    print(
        "\n1. Sketch rank error relative to min(q, 1-q) n (worst over columns, seeds)"
    )
    print(f"{'q':>8}{f'REQ k={k}':>12}{'99% bound':>11}{'KLL k=512':>11}")
    for i, q in enumerate(QUANTILES):
        bound = _req.rank_error_bound(k, n, q) / min(q, 1 - q)
        print(f"{q:>8g}{worst['req'][i]:>12.4f}{bound:>11.4f}{worst['kll'][i]:>11.4f}")
    print(
        f"values kept per feature: REQ {kept['req']:,} ({kept['req'] * 8 / 1024:.0f} "
        f"KB), KLL {kept['kll']:,} ({kept['kll'] * 8 / 1024:.0f} KB)"
    )


def band_points(X_sorted, low, high, per_band=2000):
    """Values at true ranks spread through [low, high]."""
    n = X_sorted.shape[0]
    ranks = np.unique(np.linspace(low * n, high * n - 1, per_band).astype(int))
    return X_sorted[ranks]


def estimator_study(args, data):
    bands = {"0.1-1%": (0.001, 0.01), "1-99%": (0.01, 0.99), "99-99.9%": (0.99, 0.999)}
    names = data[0][2]
    # errors[output][contender][band] -> list over seeds of per-column maxima
    errors = {
        out: {c: {b: [] for b in bands} for c in ("QN", "QT10k", "bound")}
        for out in ("normal", "uniform")
    }
    fit_seconds = {"QN": [], "QT10k": [], "QT all": []}
    for seed, (X, X_sorted, _) in enumerate(data):
        start = time.perf_counter()
        reference = QuantileTransformer(n_quantiles=1000, subsample=None).fit(X)
        fit_seconds["QT all"].append(time.perf_counter() - start)
        start = time.perf_counter()
        default = QuantileTransformer(random_state=seed).fit(X)
        fit_seconds["QT10k"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = QuantileNormalizer(sketch_size=args.sketch_size, random_state=seed)
        for row in range(0, X.shape[0], args.batch):
            ours.partial_fit(X[row : row + args.batch])
        fit_seconds["QN"].append(time.perf_counter() - start)
        for out in ("normal", "uniform"):
            for est in (reference, default, ours):
                est.set_params(output_distribution=out)
            for band, (low, high) in bands.items():
                points = np.column_stack(
                    [
                        band_points(X_sorted[:, [j]], low, high)
                        for j in range(X.shape[1])
                    ]
                )
                expected = reference.transform(points)
                for name, est in (("QN", ours), ("QT10k", default)):
                    diff = np.abs(est.transform(points) - expected).max(axis=0)
                    errors[out][name][band].append(diff)
                if out == "uniform":
                    n = X.shape[0]
                    spacing = 1 / 999
                    bound = max(
                        _req.rank_error_bound(args.sketch_size, n, q)
                        for q in (low, high, min(max(0.5, low), high))
                    )
                    errors[out]["bound"][band].append(
                        np.full(X.shape[1], bound + spacing)
                    )
    print(
        f"\n2. Largest |output - QuantileTransformer(subsample=None) output| per band "
        f"of true rank, median over {len(data)} seeds"
    )
    for out in ("normal", "uniform"):
        contenders = ("QN", "QT10k") + (("bound",) if out == "uniform" else ())
        header = f"{out + ' output':<16}" + "".join(
            f"{c + ' ' + b:>18}" for b in bands for c in contenders
        )
        print(header)
        for j, name in enumerate(names):
            row = f"{name:<16}"
            for band in bands:
                for c in contenders:
                    value = np.median([e[j] for e in errors[out][c][band]])
                    row += f"{value:>18.4f}"
            print(row)
        wins = sum(
            np.median([e[j] for e in errors[out]["QN"][b]])
            <= np.median([e[j] for e in errors[out]["QT10k"][b]])
            for b in bands
            for j in range(len(names))
        )
        print(f"QN no worse than QT10k in {wins} of {len(bands) * len(names)} cells")
    print(
        "streaming fit of the columns above (s, median): "
        + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in fit_seconds.items())
    )
    return ours


def speed_study(args):
    rng = np.random.default_rng(0)
    pool = [rng.standard_t(2, size=(1024, 64)) for _ in range(16)]
    contenders = {
        "BatchNormalizer": BatchNormalizer(),
        "QuantileNormalizer": QuantileNormalizer(random_state=0),
    }
    for est in contenders.values():
        for i in range(max(1, args.warmup // 1024)):
            est.partial_fit(pool[i % 16])
    times = {name: [] for name in contenders}
    ratios = []
    gc.disable()
    try:
        for r in range(args.rounds):
            this = {}
            for name, est in contenders.items():
                start = time.perf_counter()
                for i in range(20):
                    est.partial_fit(pool[(r * 20 + i) % 16])
                this[name] = (time.perf_counter() - start) / 20
                times[name].append(this[name])
            ratios.append(this["QuantileNormalizer"] / this["BatchNormalizer"])
    finally:
        gc.enable()
    kept = _req.retained_items(contenders["QuantileNormalizer"]._state.sketch).max()
    print("\n3. Memory and speed (64 features)")
    print(
        f"partial_fit 1024 x 64 after {args.warmup:,} rows: BatchNormalizer "
        f"{statistics.median(times['BatchNormalizer']) * 1e6:.0f} us, "
        f"QuantileNormalizer {statistics.median(times['QuantileNormalizer']) * 1e6:.0f}"
        f" us, ratio {statistics.median(ratios):.2f} (target <= 4)"
    )
    print(
        f"state per feature: QuantileNormalizer {kept:,} values ({kept * 8 / 1024:.0f}"
        f" KB); QuantileTransformer: 1,000 quantiles (8 KB) kept, and during fit "
        f"a copy of the subsample (10,000 values, 78 KB) or of all rows "
        f"({args.rows * 8 / 1024:,.0f} KB at {args.rows:,} rows for subsample=None)"
    )
    X = rng.standard_t(2, size=(args.fit_rows, 64))
    fits = {}
    for name, est in (
        ("QuantileNormalizer", QuantileNormalizer(random_state=0)),
        ("QT(subsample=None)", QuantileTransformer(subsample=None)),
        ("QT default", QuantileTransformer(random_state=0)),
    ):
        start = time.perf_counter()
        est.fit(X)
        fits[name] = time.perf_counter() - start
    print(
        f"fit {args.fit_rows:,} x 64: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in fits.items())
        + f"; QuantileTransformer(subsample=None) / QuantileNormalizer = "
        f"{fits['QT(subsample=None)'] / fits['QuantileNormalizer']:.1f}x, QT default "
        f"/ QuantileNormalizer = {fits['QT default'] / fits['QuantileNormalizer']:.2f}x"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sketch-size", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=1_000_000, help="rows")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--fit-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.seeds, args.warmup = 30_000, 1, 20_000
        args.rounds, args.fit_rows = 3, 20_000
    print(
        f"{args.rows:,} rows, batches of {args.batch}, {args.seeds} seeds, "
        f"sketch_size {args.sketch_size}; {platform.processor() or platform.machine()}"
        f", Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )
    data = []
    for seed in range(args.seeds):
        X, names = columns(args.rows, seed)
        data.append((X, np.sort(X, axis=0), names))
    sketch_study(args, data)
    estimator_study(args, data)
    speed_study(args)


if __name__ == "__main__":
    main()
