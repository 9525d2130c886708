"""Time per call of streaming normalizers, side by side in one process.

Contenders, each given the same C-contiguous batch:

- ``sknorm``: ``BatchNormalizer.partial_fit`` / ``transform`` (exact mode);
- ``sklearn``: ``StandardScaler.partial_fit`` / ``transform``;
- ``torch`` (if installed): ``torch.nn.BatchNorm1d`` under ``no_grad`` on one
  thread, train mode for fitting (it updates the running statistics) and eval
  mode for transforming; ``torch.from_numpy`` is part of each call;
- ``river`` (if installed): ``preprocessing.StandardScaler.learn_many`` /
  ``transform_many`` on a pandas DataFrame built beforehand (not timed);
- ``numpy``: the floor, ``m = X.mean(0); ((X - m) ** 2).sum(0)`` for fitting
  and ``out = X - m; out *= 1 / s`` (``m`` and ``1 / s`` in X's dtype) for
  transforming.

The contenders are interleaved: every round times a block of calls of each of
them in turn, so that a change of machine load hits all of them alike. The
table reports the median time per call over the rounds and the median over
rounds of each ratio measured within one round.

Run ``python benchmarks/bench_stream.py`` for the full table and plot (about
a minute), ``--quick`` for a smoke run that prints a small table and writes
nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import sklearn
from sklearn.preprocessing import StandardScaler

import sknorm
from sknorm import BatchNormalizer

FULL_SIZES = (16, 64, 256, 1024, 4096, 16384, 65536)
QUICK_SIZES = (16, 1024)
# Batches hold at most this many values (65536 x 64), so that the 1024-feature
# runs stop at 4096 rows and every batch fits comfortably in memory.
MAX_VALUES = 65536 * 64


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def fit_contenders(X, torch, river):
    """Callables that learn from X once per call, keyed by contender."""
    n_features = X.shape[1]
    ours = BatchNormalizer().partial_fit(X)
    theirs = StandardScaler().partial_fit(X)
    calls = {
        "sknorm": lambda: ours.partial_fit(X),
        "sklearn": lambda: theirs.partial_fit(X),
    }
    if torch is not None:
        bn = torch.nn.BatchNorm1d(n_features, dtype=getattr(torch, X.dtype.name))
        bn.train()

        def torch_fit():
            with torch.no_grad():
                bn(torch.from_numpy(X))

        calls["torch"] = torch_fit
    if river is not None and X.shape[0] > 1:
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(n_features)])
        scaler = river.preprocessing.StandardScaler()
        calls["river"] = lambda: scaler.learn_many(frame)

    def numpy_fit():
        m = X.mean(0)
        return ((X - m) ** 2).sum(0)

    calls["numpy"] = numpy_fit
    return calls


def transform_contenders(X, torch, river):
    """Callables that normalize X once per call, keyed by contender."""
    n_features = X.shape[1]
    ours = BatchNormalizer().fit(X)
    theirs = StandardScaler().fit(X)
    calls = {
        "sknorm": lambda: ours.transform(X),
        "sklearn": lambda: theirs.transform(X),
    }
    if torch is not None:
        bn = torch.nn.BatchNorm1d(n_features, dtype=getattr(torch, X.dtype.name))
        with torch.no_grad():
            bn.train()(torch.from_numpy(X))
        bn.eval()

        def torch_transform():
            with torch.no_grad():
                return bn(torch.from_numpy(X)).numpy()

        calls["torch"] = torch_transform
    if river is not None and X.shape[0] > 1:
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(n_features)])
        scaler = river.preprocessing.StandardScaler()
        scaler.learn_many(frame)
        calls["river"] = lambda: scaler.transform_many(frame)
    m = X.mean(0)
    inv_s = (1.0 / X.std(0)).astype(X.dtype)

    def numpy_transform():
        out = X - m
        out *= inv_s
        return out

    calls["numpy"] = numpy_transform
    return calls


def time_side_by_side(calls, rounds, block_seconds):
    """Median seconds per call of each callable, and per-round ratios to sknorm."""
    numbers = {}
    for name, call in calls.items():
        call()  # warm up caches and lazy imports
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-7)
        numbers[name] = max(1, int(block_seconds / once))
    per_call = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        # Rotate the order so that no contender always runs right after another.
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            call, number = calls[name], numbers[name]
            gc.disable()
            start = time.perf_counter()
            for _ in range(number):
                call()
            elapsed = time.perf_counter() - start
            gc.enable()
            per_call[name].append(elapsed / number)
    medians = {name: statistics.median(t) for name, t in per_call.items()}
    ratios = {
        name: statistics.median(
            a / b for a, b in zip(t, per_call["sknorm"], strict=True)
        )
        for name, t in per_call.items()
        if name != "sknorm"
    }
    return medians, ratios


def peak_memory_ratio(factory, X):
    """Peak extra memory (tracemalloc) of one ``partial_fit`` on X, over X's bytes."""
    est = factory().partial_fit(X[:10])
    gc.collect()
    tracemalloc.start()
    est.partial_fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / X.nbytes


def machine_description():
    threadpoolctl = _optional("threadpoolctl")
    blas = []
    if threadpoolctl is not None:
        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                blas.append(
                    f"{pool['internal_api']} {pool.get('version')}, "
                    f"{pool['num_threads']} threads"
                )
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    lines = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores; {platform.system()} "
        f"{platform.release()}",
        f"Python {platform.python_version()}, NumPy {np.__version__} "
        f"(BLAS: {'; '.join(blas) or 'unknown'}), scikit-learn {sklearn.__version__}, "
        f"sknorm {sknorm.__version__}",
    ]
    if env:
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return lines


def run(sizes, feature_counts, dtypes, rounds, block_seconds, memory_rows):
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(1)
    river = _optional("river")
    if river is not None:
        import river.preprocessing  # noqa: F401
    rng = np.random.default_rng(0)
    rows = []
    for op, factory in (
        ("partial_fit", fit_contenders),
        ("transform", transform_contenders),
    ):
        for dtype in dtypes:
            for n_features in feature_counts:
                for n_rows in sizes:
                    if n_rows * n_features > MAX_VALUES:
                        continue
                    X = (3.0 + rng.standard_normal((n_rows, n_features))).astype(dtype)
                    calls = factory(X, torch, river)
                    medians, ratios = time_side_by_side(calls, rounds, block_seconds)
                    rows.append(
                        (op, np.dtype(dtype).name, n_features, n_rows, medians, ratios)
                    )
                    print(format_row(rows[-1]), flush=True)
    X = np.random.default_rng(1).standard_normal((memory_rows, 64), dtype=np.float32)
    memory = {
        "sknorm": peak_memory_ratio(BatchNormalizer, X),
        "sklearn": peak_memory_ratio(StandardScaler, X),
    }
    return rows, memory, torch is not None, river is not None


CONTENDERS = ("sknorm", "sklearn", "torch", "river", "numpy")


def _us(seconds):
    us = seconds * 1e6
    return f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def format_row(row):
    op, dtype, n_features, n_rows, medians, ratios = row
    times = " | ".join(_us(medians[c]) if c in medians else "-" for c in CONTENDERS)
    rel = " | ".join(
        f"{ratios[c]:.2f}" if c in ratios else "-"
        for c in ("sklearn", "torch", "numpy")
    )
    return f"| {op} | {dtype} | {n_features} | {n_rows} | {times} | {rel} |"


def markdown_table(rows):
    head = (
        "| call | dtype | features | batch | sknorm µs | sklearn µs | torch µs | "
        "river µs | numpy µs | sklearn / sknorm | torch / sknorm | numpy / sknorm |"
    )
    rule = "|" + "---|" * 12
    return "\n".join([head, rule, *(format_row(r) for r in rows)])


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = sorted(
        {(op, dtype) for op, dtype, n_features, *_ in rows if n_features == 64}
    )
    fig, axes = plt.subplots(
        1, len(combos), figsize=(4.2 * len(combos), 4), sharey=True
    )
    axes = np.atleast_1d(axes)
    for ax, (op, dtype) in zip(axes, combos, strict=True):
        sel = [r for r in rows if r[0] == op and r[1] == dtype and r[2] == 64]
        for name in CONTENDERS:
            pts = [(r[3], r[3] / r[4][name]) for r in sel if name in r[4]]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.loglog(x, y, marker="o", label=name)
        ax.set_title(f"{op}, {dtype}, 64 features")
        ax.set_xlabel("batch size (rows)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("throughput (rows / s)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for bench_stream.md and bench_stream.png "
        "(default: this script's folder, or nothing written with --quick)",
    )
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        config = {
            "sizes": QUICK_SIZES,
            "feature_counts": (64,),
            "dtypes": (np.float64,),
            "rounds": args.rounds or 3,
            "block_seconds": 0.002,
            "memory_rows": 20_000,
        }
    else:
        config = {
            "sizes": FULL_SIZES,
            "feature_counts": (64, 1024),
            "dtypes": (np.float32, np.float64),
            "rounds": args.rounds or 9,
            "block_seconds": 0.02,
            "memory_rows": 1_000_000,
        }
    out = args.out
    if out is None and not args.quick:
        out = Path(__file__).resolve().parent
    load_before = os.getloadavg()
    started = time.time()
    rows, memory, has_torch, has_river = run(**config)
    load_after = os.getloadavg()
    lines = [
        *machine_description(),
        f"torch: {'1 thread' if has_torch else 'not installed'}; "
        f"river: {'installed' if has_river else 'not installed'}",
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{time.time() - started:.0f} s; {config['rounds']} rounds",
        f"Peak extra memory of partial_fit on a {config['memory_rows']:,} x 64 float32 "
        f"batch, over the batch's bytes: sknorm {memory['sknorm']:.3f}, "
        f"sklearn {memory['sklearn']:.2f}",
    ]
    table = markdown_table(rows)
    report = "\n".join(["\n".join(f"- {line}" for line in lines), "", table, ""])
    print()
    print(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_stream.md").write_text(report)
        if _optional("matplotlib") is not None:
            plot(rows, out / "bench_stream.png")
        print("wrote bench_stream.md and bench_stream.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
