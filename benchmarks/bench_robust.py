"""RobustNormalizer vs BatchNormalizer: partial_fit time per batch and memory.

Contenders, each fed the same stream of C-contiguous float64 batches
(64 features, 1024 rows by default, drawn from a heavy-tailed distribution):

- ``BatchNormalizer``: ``partial_fit`` (exact mean and variance), the
  reference of every ratio;
- ``StandardScaler``: scikit-learn's ``partial_fit``;
- ``RobustNormalizer(sketch_size=k)`` for k = 128, 512 (the default) and 2048:
  ``partial_fit`` alone, the quantile sketches' update;
- ``RobustNormalizer + read``: ``partial_fit`` followed by reading
  ``center_`` (the quantiles are computed on first read);
- ``+ transform`` rows: ``partial_fit`` then ``transform`` of the same batch,
  what a streaming pipeline pays, for RobustNormalizer and BatchNormalizer;
  their ratio is the issue's target (at most 5).

Every contender runs under each backend of sknorm (``numpy``, and ``numba``
when it is installed), in the same process; ratios are to BatchNormalizer's
``partial_fit`` (or ``partial_fit`` + ``transform``) on the same backend.

Every contender is first warmed up on ``--warmup`` rows so that the sketches
are in their steady state (all levels in use). Then the contenders are
interleaved: every round times a block of calls of each in turn, so that a
change of machine load hits all of them alike. The table reports the median
time per call over the rounds and the median over rounds of the ratio to
BatchNormalizer measured within each round. Memory is the size of the fitted
state after the warm-up (NumPy arrays) and the peak of memory allocated
during one call (tracemalloc).

Run ``python benchmarks/bench_robust.py`` (about a minute) or ``--quick``
for a smoke run.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import statistics
import time
import tracemalloc

import numpy as np
import sklearn
from sklearn.preprocessing import StandardScaler

import sknorm
from sknorm import BatchNormalizer, RobustNormalizer


def contenders(backends):
    """(name, backend, estimator, call, reference) tuples; call(estimator, X)
    learns from X, and the ratio is taken to the contender named reference."""

    def learn(est, X):
        est.partial_fit(X)

    def learn_and_read(est, X):
        est.partial_fit(X)
        est.center_  # noqa: B018 (the read computes the quantiles)

    def learn_and_transform(est, X):
        est.partial_fit(X)
        est.transform(X)

    found = [
        ("StandardScaler", "numpy", StandardScaler(), learn, "BatchNormalizer [numpy]")
    ]
    for b in backends:
        base = f"BatchNormalizer [{b}]"
        both = f"BatchNormalizer + transform [{b}]"
        found += [
            (base, b, BatchNormalizer(), learn, base),
            (
                f"RobustNormalizer k=128 [{b}]",
                b,
                RobustNormalizer(sketch_size=128),
                learn,
                base,
            ),
            (
                f"RobustNormalizer k=512 [{b}]",
                b,
                RobustNormalizer(random_state=0),
                learn,
                base,
            ),
            (
                f"RobustNormalizer k=2048 [{b}]",
                b,
                RobustNormalizer(sketch_size=2048),
                learn,
                base,
            ),
            (
                f"RobustNormalizer k=512 + read [{b}]",
                b,
                RobustNormalizer(random_state=0),
                learn_and_read,
                base,
            ),
            (both, b, BatchNormalizer(), learn_and_transform, both),
            (
                f"RobustNormalizer k=512 + transform [{b}]",
                b,
                RobustNormalizer(random_state=0),
                learn_and_transform,
                both,
            ),
        ]
    return found


def state_bytes(est) -> int:
    """Bytes of NumPy arrays in the fitted state of an estimator."""
    total = 0
    for value in vars(est).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif hasattr(value, "levels"):  # a quantile sketch
            total += sum(level.nbytes for level in value.levels)
            total += value.counts.nbytes
    return total


def peak_bytes(call, est, X) -> int:
    tracemalloc.start()
    call(est, X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=1_000_000, help="rows")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="calls per round")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.rounds, args.calls = 20_000, 3, 3
    print(
        f"{args.features} features, batches of {args.batch} rows, warm-up "
        f"{args.warmup:,} rows, {args.rounds} rounds x {args.calls} calls; "
        f"{platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, NumPy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}"
    )
    rng = np.random.default_rng(0)
    pool = [rng.standard_t(2, size=(args.batch, args.features)) for _ in range(16)]
    backends = ["numpy"]
    if importlib.util.find_spec("numba") is not None:
        backends.append("numba")
    found = contenders(backends)
    for _, backend, est, call, _ in found:
        with sknorm.config_context(backend=backend):
            for i in range(max(1, args.warmup // args.batch)):
                call(est, pool[i % len(pool)])

    times = {name: [] for name, *_ in found}
    ratios = {name: [] for name, *_ in found}
    gc.disable()
    try:
        for r in range(args.rounds):
            this_round = {}
            for name, backend, est, call, _ in found:
                sknorm.set_config(backend=backend)
                start = time.perf_counter()
                for i in range(args.calls):
                    call(est, pool[(r * args.calls + i) % len(pool)])
                this_round[name] = (time.perf_counter() - start) / args.calls
                times[name].append(this_round[name])
            for name, _, _, _, reference in found:
                ratios[name].append(this_round[name] / this_round[reference])
    finally:
        gc.enable()
        sknorm.set_config(backend="auto")

    header = (
        f"{'contender':<44}{'us per call':>12}{'ratio':>8}"
        f"{'state (KB)':>12}{'peak (KB)':>11}"
    )
    print(header)
    for name, backend, est, call, _ in found:
        with sknorm.config_context(backend=backend):
            peak = peak_bytes(call, est, pool[0])
        print(
            f"{name:<44}{statistics.median(times[name]) * 1e6:>12.0f}"
            f"{statistics.median(ratios[name]):>8.2f}"
            f"{state_bytes(est) / 1024:>12.0f}"
            f"{peak / 1024:>11.0f}"
        )
    print(
        "ratio: median over rounds of (time per call) / (that of BatchNormalizer "
        "[+ transform] on the same backend, in the same round); state: fitted "
        "arrays after the warm-up; peak: memory allocated during one call "
        "(tracemalloc, which does not see the numba kernels' own allocations)."
    )


if __name__ == "__main__":
    main()
