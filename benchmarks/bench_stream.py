"""Time per call of streaming normalizers, side by side in one process.

Contenders, each given the same C-contiguous batch of 64 features:

- ``sknorm numpy`` and ``sknorm numba``: sknorm under each backend (see
  ``sknorm.set_config``; the numba one only when numba is installed):
  ``BatchNormalizer.partial_fit`` / ``transform`` (exact mode),
  ``LayerNormalizer.transform``, and ``RobustNormalizer.partial_fit`` then
  ``transform`` of the same batch;
- ``sklearn``: ``StandardScaler.partial_fit`` / ``transform``;
- ``torch`` (if installed): ``torch.nn.BatchNorm1d`` under ``no_grad``, train
  mode for fitting (it updates the running statistics) and eval mode for
  transforming, and ``torch.nn.functional.layer_norm``; ``torch.from_numpy``
  is part of each call;
- ``numpy``: the floor, ``m = X.mean(0); ((X - m) ** 2).sum(0)`` for fitting
  (two passes) and ``out = X - m; out *= 1 / s`` (``m`` and ``1 / s`` in X's
  dtype) for transforming.

Everything runs on one thread: ``torch.set_num_threads(1)`` and
threadpoolctl's limit for BLAS (sknorm's kernels use one thread). The
contenders are interleaved: every round times a block of calls of each of
them in turn, rotating the order, so that a change of machine load hits all
of them alike. The tables report the median time per call over the rounds
and the median over rounds of each ratio measured within one round.

The first table holds the issue's targets for both dtypes and backends. The
full run also sweeps the batch size (the plot), measures the first calls of
the numba backend with an empty and with a filled compilation cache (in
fresh processes), and the peak memory of ``partial_fit``.

Run ``python benchmarks/bench_stream.py`` for everything (a few minutes,
writes ``bench_stream.md`` and ``bench_stream.png`` here), ``--quick`` for a
smoke run of a few seconds that writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import sklearn
from sklearn.preprocessing import StandardScaler

import sknorm
from sknorm import BatchNormalizer, LayerNormalizer, RobustNormalizer

N_FEATURES = 64
FULL_SIZES = (16, 64, 256, 1024, 4096, 16384, 65536)
QUICK_SIZES = (64, 4096)
DTYPES = (np.float64, np.float32)
HAS_NUMBA = importlib.util.find_spec("numba") is not None
BACKENDS = ("numpy", "numba") if HAS_NUMBA else ("numpy",)
CONTENDERS = (*(f"sknorm {b}" for b in BACKENDS), "sklearn", "torch", "numpy")


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def on_backend(backend, call):
    """A contender: ``(before, call)``; ``before`` runs outside the timing."""
    return (lambda: sknorm.set_config(backend=backend)), call


def plain(call):
    return (lambda: None), call


# -- contenders ------------------------------------------------------------------------


def fit_contenders(X, torch):
    calls = {}
    for backend in BACKENDS:
        with sknorm.config_context(backend=backend):
            ours = BatchNormalizer().partial_fit(X)
        calls[f"sknorm {backend}"] = on_backend(
            backend, lambda ours=ours: ours.partial_fit(X)
        )
    theirs = StandardScaler().partial_fit(X)
    calls["sklearn"] = plain(lambda: theirs.partial_fit(X))
    if torch is not None:
        bn = torch.nn.BatchNorm1d(X.shape[1], dtype=getattr(torch, X.dtype.name))
        bn.train()

        def torch_fit():
            with torch.no_grad():
                bn(torch.from_numpy(X))

        calls["torch"] = plain(torch_fit)

    def numpy_fit():
        m = X.mean(0)
        return ((X - m) ** 2).sum(0)

    calls["numpy"] = plain(numpy_fit)
    return calls


def transform_contenders(X, torch):
    calls = {}
    for backend in BACKENDS:
        with sknorm.config_context(backend=backend):
            ours = BatchNormalizer().fit(X)
            ours.transform(X)
        calls[f"sknorm {backend}"] = on_backend(
            backend, lambda ours=ours: ours.transform(X)
        )
    theirs = StandardScaler().fit(X)
    calls["sklearn"] = plain(lambda: theirs.transform(X))
    if torch is not None:
        bn = torch.nn.BatchNorm1d(X.shape[1], dtype=getattr(torch, X.dtype.name))
        with torch.no_grad():
            bn.train()(torch.from_numpy(X))
        bn.eval()

        def torch_transform():
            with torch.no_grad():
                return bn(torch.from_numpy(X)).numpy()

        calls["torch"] = plain(torch_transform)
    m = X.mean(0)
    inv_s = (1.0 / X.std(0)).astype(X.dtype)

    def numpy_transform():
        out = X - m
        out *= inv_s
        return out

    calls["numpy"] = plain(numpy_transform)
    return calls


def layer_contenders(X, torch):
    calls = {}
    for backend in BACKENDS:
        with sknorm.config_context(backend=backend):
            ours = LayerNormalizer().fit(X)
            ours.transform(X)
        calls[f"sknorm {backend}"] = on_backend(
            backend, lambda ours=ours: ours.transform(X)
        )
    if torch is not None:
        shape = (X.shape[1],)

        def torch_layer_norm():
            with torch.no_grad():
                return torch.nn.functional.layer_norm(
                    torch.from_numpy(X), shape, eps=1e-5
                ).numpy()

        calls["torch"] = plain(torch_layer_norm)
    return calls


def robust_contenders(dtype, warmup_rows):
    """partial_fit then transform of the next batch of a stream (1,024 rows),
    for RobustNormalizer and BatchNormalizer on each backend, after a warm-up
    that brings the quantile sketches to their steady state."""
    rng = np.random.default_rng(0)
    pool = [rng.standard_t(2, size=(1024, N_FEATURES)).astype(dtype) for _ in range(16)]
    calls = {}
    for backend in BACKENDS:
        with sknorm.config_context(backend=backend):
            for name, est in (
                ("robust", RobustNormalizer(random_state=0)),
                ("batch", BatchNormalizer()),
            ):
                for i in range(max(1, warmup_rows // 1024)):
                    est.partial_fit(pool[i % 16])
                    est.transform(pool[i % 16])

                def learn_and_transform(est=est, state={"i": 0}):  # noqa: B006
                    X = pool[state["i"] % 16]
                    state["i"] += 1
                    est.partial_fit(X)
                    return est.transform(X)

                calls[f"{name} {backend}"] = on_backend(backend, learn_and_transform)
    return calls


# -- timing ----------------------------------------------------------------------------


def time_side_by_side(calls, rounds, block_seconds):
    """Seconds per call of each contender, one list entry per round."""
    numbers = {}
    for name, (before, call) in calls.items():
        before()
        call()  # warm up caches, lazy imports and compilation
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-7)
        numbers[name] = max(1, int(block_seconds / once))
    saved = sknorm.get_config()["backend"]
    per_call = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        # Rotate the order so that no contender always runs right after another.
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            before, call = calls[name]
            number = numbers[name]
            before()
            gc.disable()
            start = time.perf_counter()
            for _ in range(number):
                call()
            elapsed = time.perf_counter() - start
            gc.enable()
            per_call[name].append(elapsed / number)
    sknorm.set_config(backend=saved)
    return per_call


def median_ratio(per_call, a, b):
    """Median over rounds of time(a) / time(b), or None."""
    if a not in per_call or b not in per_call:
        return None
    return statistics.median(
        x / y for x, y in zip(per_call[a], per_call[b], strict=True)
    )


# -- the targets -----------------------------------------------------------------------

# (label, measure, batch, peer, speed-up (peer / sknorm) or ratio (sknorm /
# peer), goal per dtype and backend)
TARGETS = [
    (
        "`partial_fit` b=64 vs `StandardScaler.partial_fit` (speed-up)",
        "partial_fit",
        64,
        "sklearn",
        "speed-up",
        {"numpy": (12, 12), "numba": (25, 25)},
    ),
    (
        "`partial_fit` b=64 vs `torch.nn.BatchNorm1d` train forward (speed-up)",
        "partial_fit",
        64,
        "torch",
        "speed-up",
        {"numpy": (1.0, 1.0), "numba": (2.0, 2.0)},
    ),
    (
        "`transform` b=64 vs `StandardScaler.transform` (speed-up)",
        "transform",
        64,
        "sklearn",
        "speed-up",
        {"numpy": (12, 12), "numba": (20, 20)},
    ),
    (
        "`partial_fit` b=65,536 / NumPy two-pass (time ratio)",
        "partial_fit",
        65536,
        "numpy",
        "ratio",
        {"numpy": (0.8, 1.0), "numba": (0.6, 0.8)},
    ),
    (
        "`transform` b=65,536 / NumPy in-place floor (time ratio)",
        "transform",
        65536,
        "numpy",
        "ratio",
        {"numpy": (1.2, 1.2), "numba": (1.1, 1.1)},
    ),
    (
        "`LayerNormalizer.transform` b=65,536 / `torch` `layer_norm` (time ratio)",
        "layer",
        65536,
        "torch",
        "ratio",
        {"numpy": (1.5, 1.5), "numba": (1.0, 1.0)},
    ),
    (
        "`RobustNormalizer` `partial_fit` + `transform` 1,024 / BatchNormalizer's "
        "(time ratio)",
        "robust",
        1024,
        "batch",
        "ratio",
        {"numpy": (5, 5), "numba": (5, 5)},
    ),
]


def target_value(kind, per_call, backend, peer):
    if peer == "batch":
        return median_ratio(per_call, f"robust {backend}", f"batch {backend}")
    ours = f"sknorm {backend}"
    if kind == "speed-up":
        return median_ratio(per_call, peer, ours)
    return median_ratio(per_call, ours, peer)


def measure(kind, X, torch, warmup_rows, dtype):
    if kind == "partial_fit":
        return fit_contenders(X, torch)
    if kind == "transform":
        return transform_contenders(X, torch)
    if kind == "layer":
        return layer_contenders(X, torch)
    return robust_contenders(dtype, warmup_rows)


def run_targets(config, torch, sweep):
    """Per (measure, batch, dtype), the per-round times (from the sweep when
    it has them)."""
    results = {}
    rng = np.random.default_rng(0)
    for _, kind, batch, *_ in TARGETS:
        batch = min(batch, config["largest"])
        for dtype in DTYPES:
            key = (kind, batch, np.dtype(dtype).name)
            if key in results:
                continue
            if key in sweep:
                results[key] = sweep[key]
                continue
            X = (3.0 + rng.standard_normal((batch, N_FEATURES))).astype(dtype)
            calls = measure(kind, X, torch, config["warmup_rows"], dtype)
            results[key] = time_side_by_side(
                calls, config["rounds"], config["block_seconds"]
            )
    return results


def target_table(results, config):
    head = "| target | dtype | " + " | ".join(f"{b} (goal)" for b in BACKENDS)
    lines = [head + " |", "|" + "---|" * (2 + len(BACKENDS))]
    missed = []
    for label, kind, batch, peer, how, goals in TARGETS:
        batch = min(batch, config["largest"])
        for d, dtype in enumerate(DTYPES):
            name = np.dtype(dtype).name
            per_call = results[(kind, batch, name)]
            cells = []
            for backend in BACKENDS:
                value = target_value(how, per_call, backend, peer)
                goal = goals[backend][d]
                if value is None:
                    cells.append(f"- ({'>=' if how == 'speed-up' else '<='} {goal})")
                    continue
                met = value >= goal if how == "speed-up" else value <= goal
                sign = ">=" if how == "speed-up" else "<="
                mark = "" if met else " **missed**"
                cells.append(f"{value:.2f} ({sign} {goal}){mark}")
                if not met:
                    missed.append(f"{label}, {name}, {backend}: {value:.2f}")
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), missed


# -- sweep, memory, compilation --------------------------------------------------------


def run_sweep(config, torch):
    rng = np.random.default_rng(0)
    sweep = {}
    for kind in ("partial_fit", "transform"):
        for dtype in DTYPES:
            for batch in config["sizes"]:
                X = (3.0 + rng.standard_normal((batch, N_FEATURES))).astype(dtype)
                calls = measure(kind, X, torch, 0, dtype)
                per_call = time_side_by_side(
                    calls, config["rounds"], config["block_seconds"]
                )
                key = (kind, batch, np.dtype(dtype).name)
                sweep[key] = per_call
                print(format_sweep_row(key, per_call), flush=True)
    return sweep


def _us(seconds):
    us = seconds * 1e6
    return f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def format_sweep_row(key, per_call):
    kind, batch, dtype = key
    times = " | ".join(
        _us(statistics.median(per_call[c])) if c in per_call else "-"
        for c in CONTENDERS
    )
    ratios = []
    for backend in BACKENDS:
        for peer in ("sklearn", "torch", "numpy"):
            r = median_ratio(per_call, peer, f"sknorm {backend}")
            ratios.append("-" if r is None else f"{r:.2f}")
    return f"| {kind} | {dtype} | {batch} | {times} | " + " | ".join(ratios) + " |"


def sweep_table(sweep):
    head = (
        "| call | dtype | batch | "
        + " | ".join(f"{c} µs" for c in CONTENDERS)
        + " | "
        + " | ".join(
            f"{p} / sknorm {b}" for b in BACKENDS for p in ("sklearn", "torch", "numpy")
        )
        + " |"
    )
    rule = "|" + "---|" * (3 + len(CONTENDERS) + 3 * len(BACKENDS))
    return "\n".join([head, rule, *(format_sweep_row(k, v) for k, v in sweep.items())])


def peak_memory_ratio(factory, X, backend):
    """Peak extra memory (tracemalloc) of one ``partial_fit`` on X, over X's bytes."""
    with sknorm.config_context(backend=backend):
        est = factory().partial_fit(X[:10])
        est.partial_fit(X[:2000])
        gc.collect()
        tracemalloc.start()
        est.partial_fit(X)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / X.nbytes


_FIRST_CALLS = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, sknorm
from sknorm import BatchNormalizer, LayerNormalizer, RobustNormalizer
out = {"import sknorm": time.perf_counter() - t0}
X = np.random.default_rng(0).standard_normal((256, 64))
def first(name, call):
    t = time.perf_counter(); call(); out[name] = time.perf_counter() - t
first("first partial_fit, float64", lambda: BatchNormalizer().fit(X).partial_fit(X))
first("then float32", lambda: BatchNormalizer().fit(X).partial_fit(X.astype("f4")))
first("first transform", lambda: BatchNormalizer().fit(X).transform(X))
first("first LayerNormalizer.transform", lambda: LayerNormalizer().fit(X).transform(X))
first("first RobustNormalizer fit + read",
      lambda: RobustNormalizer().fit(np.vstack([X] * 8)).center_)
print(json.dumps(out))
"""


def first_call_times():
    """First-call seconds of the numba backend, with an empty then a filled
    on-disk cache, each in a fresh process."""
    runs = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, SKNORM_BACKEND="numba")
        for label in ("cold (empty cache)", "warm (cache filled)"):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_CALLS],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[label] = json.loads(out.stdout)
    return runs


def first_call_table(runs):
    labels = list(runs)
    steps = list(runs[labels[0]])
    lines = ["| step | " + " | ".join(labels) + " |", "|---|---|---|"]
    for step in steps:
        lines.append(
            f"| {step} | " + " | ".join(f"{runs[x][step]:.2f} s" for x in labels) + " |"
        )
    return "\n".join(lines)


# -- report ----------------------------------------------------------------------------


def machine_description(threadpoolctl):
    blas = []
    if threadpoolctl is not None:
        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                blas.append(
                    f"{pool['internal_api']} {pool.get('version')}, kernel "
                    f"{pool.get('architecture')}, limited to 1 thread "
                    f"(of {pool['num_threads']})"
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
    numba = _optional("numba")
    lines = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores; {platform.system()} "
        f"{platform.release()}",
        f"Python {platform.python_version()}, NumPy {np.__version__} "
        f"(BLAS: {'; '.join(blas) or 'unknown'}), scikit-learn {sklearn.__version__}, "
        f"sknorm {sknorm.__version__}, numba "
        f"{numba.__version__ if numba else 'not installed'}",
        "Environment: "
        + (", ".join(f"{k}={v}" for k, v in env.items()) or "no OPENBLAS_ variable"),
    ]
    return lines


def plot(sweep, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = [
        (k, np.dtype(d).name) for k in ("partial_fit", "transform") for d in DTYPES
    ]
    fig, axes = plt.subplots(
        1, len(combos), figsize=(4.2 * len(combos), 4), sharey=True
    )
    for ax, (kind, dtype) in zip(np.atleast_1d(axes), combos, strict=True):
        keys = sorted(k for k in sweep if k[0] == kind and k[2] == dtype)
        for name in CONTENDERS:
            pts = [
                (k[1], k[1] / statistics.median(sweep[k][name]))
                for k in keys
                if name in sweep[k]
            ]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.loglog(x, y, marker="o", label=name)
        ax.set_title(f"{kind}, {dtype}, {N_FEATURES} features")
        ax.set_xlabel("batch size (rows)")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("throughput (rows / s)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, seconds")
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
            "largest": 4096,
            "rounds": args.rounds or 3,
            "block_seconds": 0.002,
            "warmup_rows": 20_000,
            "memory_rows": 20_000,
        }
    else:
        config = {
            "sizes": FULL_SIZES,
            "largest": 65536,
            "rounds": args.rounds or 9,
            "block_seconds": 0.02,
            "warmup_rows": 300_000,
            "memory_rows": 1_000_000,
        }
    out = args.out
    if out is None and not args.quick:
        out = Path(__file__).resolve().parent
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(1)
    threadpoolctl = _optional("threadpoolctl")
    limit = threadpoolctl.threadpool_limits(1) if threadpoolctl else None
    uptime_before = os.getloadavg()
    started = time.time()
    sweep = run_sweep(config, torch)
    results = run_targets(config, torch, sweep)
    table, missed = target_table(results, config)
    n_goals = len(TARGETS) * len(DTYPES) * len(BACKENDS)
    X = np.random.default_rng(1).standard_normal(
        (config["memory_rows"], N_FEATURES), dtype=np.float32
    )
    memory = {
        "sknorm numpy": peak_memory_ratio(BatchNormalizer, X, "numpy"),
        "sklearn": peak_memory_ratio(StandardScaler, X, "numpy"),
    }
    compile_times = None if args.quick or not HAS_NUMBA else first_call_times()
    uptime_after = os.getloadavg()
    if limit is not None:
        limit.restore_original_limits()
    lines = [
        *machine_description(threadpoolctl),
        f"torch: {'1 thread' if torch is not None else 'not installed'}",
        f"Load average (1, 5, 15 min) {', '.join(f'{x:.2f}' for x in uptime_before)} "
        f"before, {', '.join(f'{x:.2f}' for x in uptime_after)} after; "
        f"{time.time() - started:.0f} s; {config['rounds']} rounds",
        f"Peak extra memory of partial_fit on a {config['memory_rows']:,} x "
        f"{N_FEATURES} float32 batch, over the batch's bytes (tracemalloc): "
        + ", ".join(f"{k} {v:.3f}" for k, v in memory.items())
        + " (the numba kernels allocate O(features + block rows), outside "
        "tracemalloc's view)",
    ]
    if config["largest"] < 65536:
        lines.append(
            "Quick run: the 65,536-row targets are measured at "
            f"{config['largest']} rows"
        )
    parts = [
        "\n".join(f"- {line}" for line in lines),
        "",
        "Targets (64 features, 1 thread; median over rounds of the ratio "
        "measured within a round):",
        "",
        table,
        "",
        f"Goals met: {n_goals - len(missed)} of {n_goals} (misses in bold).",
        "",
        "Batch-size sweep (median µs per call; ratios: above 1, sknorm is faster):",
        "",
        sweep_table(sweep),
        "",
    ]
    if compile_times is not None:
        parts += [
            "First calls under the numba backend, fresh processes:",
            "",
            first_call_table(compile_times),
            "",
        ]
    report = "\n".join(parts)
    print()
    print(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_stream.md").write_text(report)
        if _optional("matplotlib") is not None:
            plot(sweep, out / "bench_stream.png")
        print("wrote bench_stream.md and bench_stream.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
