"""StreamingPipeline overhead against a hand-written loop, and DataFrame input.

Table 1: the cost per batch of ``StreamingPipeline.partial_fit`` for
``BatchNormalizer -> MLPClassifier`` on 784 features and batches of 64 rows
(10 classes), against the same two estimators driven by hand (normalizer
``partial_fit`` + ``transform``, MLP ``partial_fit``). Contenders:

- ``hand loop``: the reference of every ratio;
- ``pipeline, rollback=validated``: the default;
- ``pipeline, rollback=full``: every array of the MLP journaled per batch;
- ``hand loop + pickle``: the hand loop plus a pickle of both steps'
  ``__dict__`` per batch, which is what ``partial_fit`` did before the
  rollback journal (for comparison).

For MLP sizes (32,), (256, 256) and (1024, 1024), each after a history of 1,
1,000 and 20,000 batches. A long history is simulated: after a few real
batches, ``loss_curve_`` (the only state of the MLP that grows with the
stream) is filled up to the history length, as if that many batches had been
learned.

Table 2: ``BatchNormalizer.partial_fit`` and ``transform`` of a 64 x 64 batch
given as a NumPy array, a pandas DataFrame and a polars DataFrame (with
string column names), and the ratio to the array.

BLAS runs on one thread (threadpoolctl), as the machine is shared: with two
threads on two busy cores the MLP's times vary by a factor of several.
The contenders are interleaved: every round times a block of calls of each
in turn, so that a change of machine load hits all of them alike. Reported:
the median time per call over the rounds, and the median over rounds of the
ratio to the reference measured within each round.

Run ``python benchmarks/bench_pipeline.py`` (a few minutes) or ``--quick``
for a smoke run.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import platform
import statistics
import time

import numpy as np
import sklearn
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from sknorm import BatchNormalizer, make_streaming_pipeline

N_FEATURES, BATCH, N_CLASSES = 784, 64, 10


def data(n_batches, seed=0):
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(0, 4, N_FEATURES)
    X = rng.normal(size=(n_batches, BATCH, N_FEATURES)) * scales
    y = rng.integers(0, N_CLASSES, size=(n_batches, BATCH))
    return X, y


class HandLoop:
    def __init__(self, mlp, pickle_steps=False):
        self.norm, self.mlp = BatchNormalizer(), mlp
        self.pickle_steps = pickle_steps

    def partial_fit(self, X, y, **params):
        if self.pickle_steps:
            for est in (self.norm, self.mlp):
                pickle.dumps(est.__dict__, protocol=pickle.HIGHEST_PROTOCOL)
        self.norm.partial_fit(X)
        self.mlp.partial_fit(self.norm.transform(X), y, **params)
        return self

    @property
    def final(self):
        return self.mlp


class Pipeline:
    def __init__(self, mlp, rollback):
        self.pipe = make_streaming_pipeline(BatchNormalizer(), mlp, rollback=rollback)

    def partial_fit(self, X, y, **params):
        return self.pipe.partial_fit(X, y, **params)

    @property
    def final(self):
        return self.pipe[-1]


def contenders(hidden):
    def mlp():
        return MLPClassifier(hidden_layer_sizes=hidden, random_state=0)

    return {
        "hand loop": HandLoop(mlp()),
        "pipeline, rollback=validated": Pipeline(mlp(), "validated"),
        "pipeline, rollback=full": Pipeline(mlp(), "full"),
        "hand loop + pickle (before)": HandLoop(mlp(), pickle_steps=True),
    }


def time_block(runner, X, y, block):
    start = time.perf_counter()
    for i in range(block):
        runner.partial_fit(X[i % len(X)], y[i % len(y)])
    return (time.perf_counter() - start) / block


def bench_overhead(hidden, history, rounds, block, X, y):
    runners = contenders(hidden)
    for runner in runners.values():
        runner.partial_fit(X[0], y[0], classes=np.arange(N_CLASSES))
        for i in range(1, 3):
            runner.partial_fit(X[i], y[i])
        curve = runner.final.loss_curve_
        curve.extend([curve[-1]] * max(0, history - len(curve)))
    times = {name: [] for name in runners}
    ratios = {name: [] for name in runners}
    for _ in range(rounds):
        measured = {
            name: time_block(runner, X, y, block) for name, runner in runners.items()
        }
        for name, seconds in measured.items():
            times[name].append(seconds)
            ratios[name].append(seconds / measured["hand loop"])
    return {
        name: (statistics.median(times[name]), statistics.median(ratios[name]))
        for name in runners
    }


def bench_frames(rounds, block):
    import pandas as pd

    try:
        import polars as pl
    except ImportError:
        pl = None
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 64)) * 10.0 ** rng.uniform(0, 6, 64)
    columns = [f"f{i}" for i in range(64)]
    inputs = {"NumPy array": X, "pandas DataFrame": pd.DataFrame(X, columns=columns)}
    if pl is not None:
        inputs["polars DataFrame"] = pl.DataFrame(X, schema=columns)
    fitted = {
        name: BatchNormalizer().partial_fit(batch) for name, batch in inputs.items()
    }
    learners = {name: copy.deepcopy(est) for name, est in fitted.items()}
    rows = {}
    for method in ("partial_fit", "transform"):
        estimators = learners if method == "partial_fit" else fitted
        times = {name: [] for name in inputs}
        ratios = {name: [] for name in inputs}
        for _ in range(rounds):
            measured = {}
            for name, batch in inputs.items():
                call = getattr(estimators[name], method)
                start = time.perf_counter()
                for _ in range(block):
                    call(batch)
                measured[name] = (time.perf_counter() - start) / block
            for name, seconds in measured.items():
                times[name].append(seconds)
                ratios[name].append(seconds / measured["NumPy array"])
        for name in inputs:
            rows[(method, name)] = (
                statistics.median(times[name]),
                statistics.median(ratios[name]),
            )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    if args.quick:
        sizes, histories, rounds = [(32,), (256, 256)], [1, 1_000], 2
    else:
        sizes, histories, rounds = (
            [(32,), (256, 256), (1024, 1024)],
            [1, 1_000, 20_000],
            7,
        )
    print(
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, {platform.machine()}"
    )
    X, y = data(8)
    print(
        f"\nStreamingPipeline vs hand loop: BatchNormalizer -> MLPClassifier, "
        f"{N_FEATURES} features, batch {BATCH}; history simulated by filling "
        "loss_curve_\n"
    )
    print(
        f"{'hidden layers':<14}{'history':>9}  {'contender':<30}"
        f"{'ms/batch':>10}{'ratio':>8}"
    )
    for hidden in sizes:
        block = 2 if args.quick else (20 if hidden == (32,) else 5)
        for history in histories:
            results = bench_overhead(hidden, history, rounds, block, X, y)
            for name, (seconds, ratio) in results.items():
                print(
                    f"{str(hidden):<14}{history:>9,}  {name:<30}"
                    f"{seconds * 1e3:>10.3f}{ratio:>8.3f}"
                )
    print("\nBatchNormalizer on a 64 x 64 batch: DataFrame vs array\n")
    print(f"{'method':<13}{'input':<18}{'us/call':>10}{'ratio':>8}")
    rows = bench_frames(rounds=3 if args.quick else 9, block=20 if args.quick else 200)
    for (method, name), (seconds, ratio) in rows.items():
        print(f"{method:<13}{name:<18}{seconds * 1e6:>10.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    with threadpool_limits(limits=1):
        main()
