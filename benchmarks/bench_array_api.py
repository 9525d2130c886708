"""BatchNormalizer on PyTorch tensors against torch.nn.BatchNorm1d, and precision.

Table 1 (speed): PyTorch CPU, float32, 64 features, batches of 64 and 65,536
rows, one thread (``torch.set_num_threads(1)``, and threadpoolctl's limit for
NumPy's BLAS and OpenMP), scikit-learn's array API dispatch on. CPU tensors
take sknorm's NumPy code on zero-copy views (the NumPy-views route of
``sknorm._array_api``), so ``partial_fit(tensor)`` costs what
``partial_fit(ndarray)`` costs plus the wrapping of the published tensors.
Contenders, per batch size:

- ``BatchNorm1d train``: the training forward of ``torch.nn.BatchNorm1d``
  under ``torch.no_grad()`` (batch statistics, running-statistics update and
  normalized output in one fused kernel): the reference of ``partial_fit``;
- ``BatchNorm1d train, autograd``: the same with autograd recording, as in a
  training step;
- ``partial_fit(tensor)``: ``BatchNormalizer.partial_fit`` on the tensor
  (float64 accumulation, exact for any batch partition);
- ``partial_fit(ndarray)``: the same batch as a NumPy array, for context;
- ``BatchNorm1d eval``: the evaluation forward under ``no_grad``: the
  reference of ``transform``;
- ``transform(tensor)``, ``transform(ndarray)``;
- ``transform(tensor), autograd``: a tensor that requires grad, which takes
  the device route (PyTorch operations) so that the output is
  differentiable, against ``BatchNorm1d eval`` with autograd recording.

The contenders are interleaved: every round times a block of calls of each
in turn, so that a change of the shared machine's load hits all alike.
Reported: the median time per call over the rounds, and the median over
rounds of the ratio to the reference measured within the same round.

Table 2 (precision): streams of ``offset + N(0, 1)`` in float32 (offsets 1e4
and 1e6, 3 features, batches of 64 rows) through ``BatchNormalizer`` and
scikit-learn's ``StandardScaler`` on a device with float64 (PyTorch CPU) and
on one without (array-api-strict's ``no_float64`` device, which stands in for
PyTorch MPS). Errors against the exact statistics of the same float32 data
(np.longdouble): the mean's in units of the float32 spacing at the mean (0.5
is the best a float32 mean can be), the variance's relative.

Run ``python benchmarks/bench_array_api.py`` (about a minute) or ``--quick``
for a smoke run; ``SKNORM_BACKEND=numpy`` runs sknorm's NumPy code without the
compiled kernels. Needs PyTorch and array-api-strict.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")  # read when SciPy is imported

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sknorm import BatchNormalizer  # noqa: E402
from sknorm._compat import to_numpy  # noqa: E402

N_FEATURES = 64


def contenders(rows: int, seed: int = 0) -> dict:
    """Name -> (reference name, function of no argument) for one batch size."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, N_FEATURES, generator=generator) * 3.0 + 10.0
    X_np = X.numpy()
    batch_norm = torch.nn.BatchNorm1d(N_FEATURES)
    on_tensors = BatchNormalizer().fit(X)
    on_arrays = BatchNormalizer().fit(X_np)

    def train():
        batch_norm.train()
        with torch.no_grad():
            return batch_norm(X)

    def train_autograd():
        batch_norm.train()
        return batch_norm(X)

    def evaluate():
        batch_norm.eval()
        with torch.no_grad():
            return batch_norm(X)

    X_tracked = X.clone().requires_grad_(True)

    def evaluate_autograd():
        batch_norm.eval()
        return batch_norm(X_tracked)

    return {
        "BatchNorm1d train": ("BatchNorm1d train", train),
        "BatchNorm1d train, autograd": ("BatchNorm1d train", train_autograd),
        "partial_fit(tensor)": ("BatchNorm1d train", lambda: on_tensors.partial_fit(X)),
        "partial_fit(ndarray)": (
            "BatchNorm1d train",
            lambda: on_arrays.partial_fit(X_np),
        ),
        "BatchNorm1d eval": ("BatchNorm1d eval", evaluate),
        "transform(tensor)": ("BatchNorm1d eval", lambda: on_tensors.transform(X)),
        "transform(ndarray)": ("BatchNorm1d eval", lambda: on_arrays.transform(X_np)),
        "BatchNorm1d eval, autograd": ("BatchNorm1d eval, autograd", evaluate_autograd),
        "transform(tensor), autograd": (
            "BatchNorm1d eval, autograd",
            lambda: on_tensors.transform(X_tracked),
        ),
    }


def time_block(func, calls: int) -> float:
    # The first call after another contender's pays for the memory that one
    # left behind (the allocator's state, page faults): it is not timed.
    func()
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls


def speed_table(
    rows: int, rounds: int, calls: int
) -> list[tuple[str, float, float, str]]:
    entries = contenders(rows)
    for _, func in entries.values():  # warm-up
        time_block(func, max(1, calls // 4))
    times: dict[str, list[float]] = {name: [] for name in entries}
    ratios: dict[str, list[float]] = {name: [] for name in entries}
    for _ in range(rounds):
        this_round = {
            name: time_block(func, calls) for name, (_, func) in entries.items()
        }
        for name, (reference, _) in entries.items():
            times[name].append(this_round[name])
            ratios[name].append(this_round[name] / this_round[reference])
    return [
        (
            name,
            statistics.median(times[name]),
            statistics.median(ratios[name]),
            entries[name][0],
        )
        for name in entries
    ]


def precision_table(n_batches: int) -> list[tuple[str, float, str, float, float]]:
    import array_api_strict

    rows = []
    rng = np.random.default_rng(12)
    places = [
        ("PyTorch CPU (float64)", lambda a: torch.asarray(a)),
        (
            "no float64 (array-api-strict)",
            lambda a: array_api_strict.asarray(
                a, device=array_api_strict.Device("no_float64")
            ),
        ),
    ]
    for offset in (1e4, 1e6):
        data = (offset + rng.standard_normal((n_batches * 64, 3))).astype(np.float32)
        exact = data.astype(np.longdouble)
        mean, var = exact.mean(0), exact.var(0)
        ulp = np.spacing(mean.astype(np.float32)).astype(np.longdouble)
        for device_name, make in places:
            for est in (BatchNormalizer(), StandardScaler()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    for start in range(0, len(data), 64):
                        est.partial_fit(make(data[start : start + 64]))
                mean_error = np.max(np.abs(to_numpy(est.mean_) - mean) / ulp)
                var_error = np.max(np.abs(to_numpy(est.var_) / var - 1))
                rows.append(
                    (device_name, offset, type(est).__name__, mean_error, var_error)
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    sklearn.set_config(array_api_dispatch=True)
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"NumPy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"SKNORM_BACKEND={os.environ.get('SKNORM_BACKEND', 'auto')}"
    )
    plans = [(64, 3 if args.quick else 15, 20 if args.quick else 400)]
    plans.append((65_536, 3 if args.quick else 9, 1 if args.quick else 4))
    for rows, rounds, calls in plans:
        print(f"\n{rows} rows x {N_FEATURES} features, float32")
        print(f"{'contender':<30} {'us per call':>12} {'ratio':>7}  reference")
        for name, seconds, ratio, reference in speed_table(rows, rounds, calls):
            print(f"{name:<30} {seconds * 1e6:>12.1f} {ratio:>7.2f}  {reference}")
    print("\nPrecision of streamed statistics, float32 data, batches of 64 rows")
    print(
        f"{'device':<30} {'offset':>7} {'estimator':<16} "
        f"{'mean err (ulp)':>15} {'var rel. err':>13}"
    )
    for device, offset, name, mean_error, var_error in precision_table(
        50 if args.quick else 1000
    ):
        print(
            f"{device:<30} {offset:>7.0e} {name:<16} {mean_error:>15.2f} "
            f"{var_error:>13.1e}"
        )


if __name__ == "__main__":
    main()
