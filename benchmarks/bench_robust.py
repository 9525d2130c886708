"""RobustNormalizer vs BatchNormalizer: partial_fit time per batch and memory.

Contenders, each fed the same stream of C-contiguous float64 batches
(64 features, 1024 rows by default, drawn from a heavy-tailed distribution):

- ``BatchNormalizer``: ``partial_fit`` (exact mean and variance), the
  reference of every ratio;
- ``StandardScaler``: scikit-learn's ``partial_fit``;
- ``RobustNormalizer(sketch_size=k)`` for k = 128, 512 (the default) and 2048:
  ``partial_fit`` alone, the quantile sketches' update;
- ``RobustNormalizer + read``: ``partial_fit`` followed by reading
  ``center_`` (what a pipeline pays when it transforms every batch right
  after learning from it: the quantiles are computed on first read).

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
import platform
import statistics
import time
import tracemalloc

import numpy as np
import sklearn
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer, RobustNormalizer


def contenders():
    """(name, estimator, call) triples; call(estimator, X) learns from X."""

    def learn(est, X):
        est.partial_fit(X)

    def learn_and_read(est, X):
        est.partial_fit(X)
        est.center_  # noqa: B018 (the read computes the quantiles)

    return [
        ("BatchNormalizer", BatchNormalizer(), learn),
        ("StandardScaler", StandardScaler(), learn),
        ("RobustNormalizer k=128", RobustNormalizer(sketch_size=128), learn),
        ("RobustNormalizer k=512", RobustNormalizer(random_state=0), learn),
        ("RobustNormalizer k=2048", RobustNormalizer(sketch_size=2048), learn),
        (
            "RobustNormalizer k=512 + read",
            RobustNormalizer(random_state=0),
            learn_and_read,
        ),
    ]


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
    found = contenders()
    for _, est, call in found:
        for i in range(max(1, args.warmup // args.batch)):
            call(est, pool[i % len(pool)])

    times = {name: [] for name, _, _ in found}
    ratios = {name: [] for name, _, _ in found}
    gc.disable()
    try:
        for r in range(args.rounds):
            this_round = {}
            for name, est, call in found:
                start = time.perf_counter()
                for i in range(args.calls):
                    call(est, pool[(r * args.calls + i) % len(pool)])
                this_round[name] = (time.perf_counter() - start) / args.calls
                times[name].append(this_round[name])
            for name in this_round:
                ratios[name].append(this_round[name] / this_round["BatchNormalizer"])
    finally:
        gc.enable()

    header = (
        f"{'contender':<31}{'us per call':>12}{'ratio':>8}"
        f"{'state (KB)':>12}{'peak (KB)':>11}"
    )
    print(header)
    for name, est, call in found:
        print(
            f"{name:<31}{statistics.median(times[name]) * 1e6:>12.0f}"
            f"{statistics.median(ratios[name]):>8.2f}"
            f"{state_bytes(est) / 1024:>12.0f}"
            f"{peak_bytes(call, est, pool[0]) / 1024:>11.0f}"
        )
    print(
        "ratio: median over rounds of (time per call) / (BatchNormalizer's in "
        "the same round); state: fitted arrays after the warm-up; peak: memory "
        "allocated during one call."
    )


if __name__ == "__main__":
    main()
