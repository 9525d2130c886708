"""Streaming statistics on any array API namespace and device.

The array API counterpart of :mod:`sknorm._stats` (and of the transforms in
:mod:`sknorm._floats` and :mod:`sknorm._rowstats`), for PyTorch tensors, CuPy
arrays, array-api-strict arrays and the other libraries that scikit-learn's
array API dispatch accepts. The states are the same named tuples
(:class:`~sknorm._stats.StreamState`, :class:`~sknorm._stats.EmaState`,
:class:`~sknorm._stats.Moments`) and the update rules the same formulas; the
fields hold arrays of the data's namespace, on the data's device, and
``n_rows`` stays a Python int. NumPy arrays never come here: they take the
NumPy functions, which are faster on them.

Naming rule, as in :mod:`sknorm._stats`: ``old`` are the statistics until now,
``new`` the increment, ``updated`` both together.

Precision. Statistics accumulate in float64 where the device has it, relative
to a per-feature ``shift`` (the feature's first value) and in two passes per
block of rows, as the NumPy functions do. A device without float64 (PyTorch
MPS, some XPUs) accumulates in float32 with two safeguards:

- shifted data: ``x - shift`` is exact in float32 for every ``x`` within a
  factor 2 of the shift (Sterbenz), so an offset such as ``1e6 + N(0, 1)``
  costs no digits;
- compensated running moments: the ``weight``, ``mean`` and ``var`` of a
  stream are each held as an unevaluated sum of two float32 numbers, rows 0
  (``hi``) and 1 (``lo``) of an array of shape (2, n_features), updated with
  error-free transformations (Knuth's two-sum, Dekker's product), so the
  rounding of a long stream of merges does not accumulate: the running
  statistics stay within a few float32 roundings of the exact statistics of
  the (float32) data.

Synchronisation. Nothing here converts a device array to a Python value,
except :func:`read_report`: an update returns, next to its state, a *report*
of 0-d device arrays (is everything finite, did a statistic overflow, ...)
that the caller reads in one transfer and acts on.

NumPy views. A :class:`Space` whose arrays are NumPy memory under another
type (PyTorch on the CPU) carries :class:`NumpyViews`: zero-copy conversions
both ways, with which :mod:`sknorm._array_api` computes there with the NumPy
functions instead of these (see :func:`numpy_views`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from ._compat import array_device, array_namespace, real_float_dtypes, to_numpy
from ._stats import EmaState, Moments, StreamState, block_rows, state_weight
from ._typing import ArrayNamespace, NamespaceArray

if TYPE_CHECKING:
    import numpy as np
    import torch

# The state tuples of sknorm._stats hold arrays of a space's namespace here
# (or float32 (hi, lo) pairs of them). Their field annotations describe the
# NumPy states, and a NamedTuple cannot be generic before Python 3.11, so
# these states are Any to a type checker; the names say which tuple is meant.
XpMoments: TypeAlias = Any
XpStreamState: TypeAlias = Any
XpEmaState: TypeAlias = Any

__all__ = [
    "Space",
    "NumpyViews",
    "ArrayState",
    "space_of",
    "numpy_views",
    "read_report",
    "empty_stream_state",
    "empty_ema_state",
    "batch_moments",
    "merge_moments",
    "update_exact",
    "update_half_life",
    "update_momentum",
    "merge_stream_states",
    "overflowed",
    "state_mean_var",
    "settled",
    "scale_from_var",
    "exact_center",
    "center_parts",
    "normalize_columns",
    "clip_bounds",
    "denormalize_columns",
    "group_moments",
    "normalize_dense_groups",
    "invert_dense_groups",
    "state_to_numpy",
    "state_from_numpy",
]


class NumpyViews(NamedTuple):
    """Zero-copy conversions between a namespace's arrays on one device and
    NumPy arrays: ``to_numpy(X)`` is an ndarray on X's memory (X's values
    only: no autograd history), ``from_numpy(a)`` an array of the namespace
    on ``a``'s memory. Writing into either changes the other."""

    to_numpy: Callable[[NamespaceArray], np.ndarray]
    from_numpy: Callable[[np.ndarray], NamespaceArray]


class Space(NamedTuple):
    """Where an estimator's statistics live, and in which float dtype.

    ``xp`` is the array namespace, ``device`` the device, ``dtype`` the float
    dtype of the accumulation (float64 where the device has it, else
    float32), ``input_dtypes`` the float dtypes that input keeps (others are
    converted to the first), ``array_type`` the type of the arrays, which
    recognizes a batch of the same library cheaply, ``host_memory``
    whether the device is the CPU (where batches are processed in blocks of
    rows that stay in a cache) and ``numpy_views`` the :class:`NumpyViews`
    of the space, or None (see :func:`numpy_views`).
    """

    xp: ArrayNamespace
    device: Any
    dtype: Any
    input_dtypes: tuple[Any, ...]
    array_type: type
    host_memory: bool = False
    numpy_views: NumpyViews | None = None

    @property
    def compensated(self) -> bool:
        """Whether the running moments are float32 (hi, lo) pairs."""
        return self.dtype == self.xp.float32

    @property
    def name(self) -> str:
        """The namespace's name, without the compatibility wrapper's prefix."""
        return self.xp.__name__.removeprefix("sklearn.externals.").removeprefix(
            "array_api_compat."
        )

    def holds(self, X: object) -> bool:
        """Whether X is an array of this namespace on this device."""
        if type(X) is not self.array_type:
            return False
        # The standard's ``device`` attribute answers for most libraries, at
        # a tenth of the cost of the compatibility layer's function.
        device = getattr(X, "device", None)
        return device == self.device or array_device(X) == self.device

    def same_as(self, other: Space) -> bool:
        """Whether ``other`` is this space: same namespace, device and form
        of the statistics (NumPy views or not)."""
        return (
            self.xp is other.xp
            and self.device == other.device
            and (self.numpy_views is None) == (other.numpy_views is None)
        )


class ArrayState(NamedTuple):
    """An estimator's state on an array API namespace: the statistics (a
    state tuple of that namespace, or the number of rows seen), where they
    live, and what the host knows about them without asking the device.

    ``facts`` is estimator-specific plain Python data (see BatchNormalizer).
    """

    stats: Any
    space: Space
    facts: Any = None


def space_of(X: NamespaceArray) -> Space:
    """The :class:`Space` of an array X of any array API namespace."""
    xp = array_namespace(X)
    device = array_device(X)
    dtypes = real_float_dtypes(xp, device)
    host_memory = "array_api_strict" in xp.__name__ or str(device).startswith("cpu")
    views = numpy_views(xp, device)
    return Space(xp, device, dtypes[0], dtypes, type(X), host_memory, views)


def numpy_views(xp: ArrayNamespace, device: Any) -> NumpyViews | None:
    """The :class:`NumpyViews` of ``xp`` arrays on ``device``, or None.

    Only PyTorch's CPU tensors have them: ``tensor.numpy()`` and
    ``torch.from_numpy`` share memory both ways, writable, for well under a
    microsecond, while every PyTorch operation costs microseconds, which is
    what makes small batches slow here. No generic DLPack route
    (``np.from_dlpack``, ``xp.from_dlpack``) is taken: the standard promises
    neither a zero-copy nor a writable import. array-api-strict's CPU arrays
    are NumPy memory too, but that library exists to check that the code
    here keeps to the standard, and speed does not matter there.
    """
    if "torch" not in xp.__name__ or getattr(device, "type", None) != "cpu":
        return None
    return _torch_views()


@functools.cache
def _torch_views() -> NumpyViews:
    import torch  # already imported: a tensor brought us here

    def to_numpy(X: torch.Tensor) -> np.ndarray:
        return (X.detach() if X.requires_grad else X).numpy()

    def from_numpy(a: np.ndarray) -> torch.Tensor:
        # A read-only array would make PyTorch warn (tensors are writable).
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    return NumpyViews(to_numpy, from_numpy)


def read_report(report: dict[str, Any]) -> dict[str, Any]:
    """The values of a report, with one device-to-host transfer at most.

    Entries that are Python numbers are kept; 0-d device arrays (bool or
    integer) become Python ints, all moved together. The entry ``checksum``
    (a float, see :func:`checksum`) becomes ``retry``: whether it is not
    finite.
    """
    on_device = [k for k, v in report.items() if not isinstance(v, bool | int | float)]
    if not on_device:
        return dict(report)
    values = dict(report)
    if on_device == ["checksum"]:  # the fast path's one number
        values["retry"] = int(not math.isfinite(float(values.pop("checksum"))))
        return values
    if "checksum" in values:
        values["retry"] = ~array_namespace(report["checksum"]).isfinite(
            values.pop("checksum")
        )
        on_device[on_device.index("checksum")] = "retry"
    if len(on_device) == 1:
        key = on_device[0]
        values[key] = int(values[key])
        return values
    xp = array_namespace(values[on_device[0]])
    stacked = xp.stack([xp.astype(values[k], xp.int64) for k in on_device])
    tolist = getattr(stacked, "tolist", None)
    host = tolist() if tolist is not None else to_numpy(stacked).tolist()
    values.update(zip(on_device, host, strict=True))
    return values


# -- helpers ----------------------------------------------------------------------


def _where(
    xp: ArrayNamespace,
    condition: NamespaceArray,
    x1: NamespaceArray,
    x2: NamespaceArray,
) -> NamespaceArray:
    """``xp.where`` that also takes a Python number for ``x1`` or ``x2``
    (array API 2023.12, which older scikit-learn asks of array-api-strict,
    does not)."""
    if isinstance(x1, int | float):
        x1 = xp.asarray(x1, dtype=x2.dtype, device=array_device(x2))
    elif isinstance(x2, int | float):
        x2 = xp.asarray(x2, dtype=x1.dtype, device=array_device(x1))
    return xp.where(condition, x1, x2)


def _nonzero(xp: ArrayNamespace, den: NamespaceArray) -> NamespaceArray:
    """``den`` with its zeros replaced by 1 (a zero weight gives zero moments)."""
    return _where(xp, den == 0, 1.0, den)


def _ones(space: Space, n: int) -> NamespaceArray:
    return space.xp.ones(n, dtype=space.dtype, device=space.device)


def _detached(X: NamespaceArray) -> NamespaceArray:
    """X without autograd history (statistics are constants of the data)."""
    return X.detach() if getattr(X, "requires_grad", False) else X


def _copy(xp: ArrayNamespace, X: NamespaceArray) -> NamespaceArray:
    """A copy of X that keeps its autograd history (for ``transform``)."""
    clone = getattr(X, "clone", None)
    return clone() if clone is not None else xp.asarray(X, copy=True)


# Error-free transformations, for the compensated float32 moments. They need
# IEEE arithmetic without reassociation, which every eager array library has.


def _two_sum(
    a: NamespaceArray, b: NamespaceArray
) -> tuple[NamespaceArray, NamespaceArray]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _split(a: NamespaceArray) -> tuple[NamespaceArray, NamespaceArray]:
    """Dekker's split of a float32 into two halves of 12 significant bits."""
    c = 4097.0 * a
    hi = c - (c - a)
    return hi, a - hi


def _two_product(
    a: NamespaceArray, b: NamespaceArray
) -> tuple[NamespaceArray, NamespaceArray]:
    """``(p, e)`` with ``p = fl(a * b)`` and ``p + e == a * b`` exactly (Dekker)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _pair_add(
    xp: ArrayNamespace, pair: NamespaceArray, x: NamespaceArray | float
) -> NamespaceArray:
    """The (hi, lo) pair of ``(pair[0] + pair[1]) + x``, renormalized."""
    s, e = _two_sum(pair[0, ...], x)
    lo = pair[1, ...] + e
    hi = s + lo
    return xp.stack([hi, lo - (hi - s)])


def _pair_scale(
    xp: ArrayNamespace, pair: NamespaceArray, factor: float
) -> NamespaceArray:
    """The (hi, lo) pair of ``(pair[0] + pair[1]) * factor``, renormalized
    (``factor`` rounded to the pair's dtype)."""
    rounded = xp.asarray(factor, dtype=pair.dtype, device=pair.device)
    p, e = _two_product(pair[0, ...], rounded)
    lo = pair[1, ...] * rounded + e
    hi = p + lo
    return xp.stack([hi, lo - (hi - p)])


def _value(x: NamespaceArray) -> NamespaceArray:
    """A (hi, lo) pair collapsed to one array; anything else as it is."""
    return x[0, ...] + x[1, ...] if getattr(x, "ndim", 0) == 2 else x


def _moment_shape(space: Space, n_features: int) -> tuple[int, ...]:
    return (2, n_features) if space.compensated else (n_features,)


# -- batch moments -----------------------------------------------------------------


def batch_moments(
    space: Space,
    X: NamespaceArray,
    shift: NamespaceArray,
    sample_weight: NamespaceArray | None = None,
    *,
    careful: bool = False,
) -> tuple[XpMoments, Any, Any]:
    """Moments of ``X - shift``, in two passes per block of rows.

    ``careful=False`` is the fast path, for a batch believed to hold neither
    NaN nor infinity: the weight and count are then the same for every
    feature (Python numbers without weights). A NaN or infinity makes the
    statistics NaN, which the caller sees in its report and answers by
    calling again with ``careful=True``: missing values (NaN) are then left
    out, feature by feature, as in :func:`sknorm._stats.batch_moments`.

    Blocks of rows are combined with the parallel formula::

        W = sum_k W_k,  mean = sum_k (W_k / W) mean_k,
        var = sum_k (W_k / W) (var_k + (mean_k - mean)**2)

    Returns
    -------
    moments : Moments
        Weight, mean and (biased) variance, in the space's dtype.
    count : int or array of int64
        Number of non-missing values per feature.
    guard : 0-d array or None
        With weights on the fast path, the sum of all shifted values: not
        finite if a row of weight 0 (which a matrix product may skip) holds
        NaN or infinity.
    """
    n_samples, n_features = X.shape
    rows = block_rows(n_features) if space.host_memory else max(n_samples, 1)
    if n_samples <= rows:
        return _block_moments(space, X, shift, sample_weight, careful)
    xp = space.xp
    # One work array for every block, as the NumPy path has: a fresh array
    # per block costs the allocator more than the arithmetic.
    work = xp.empty((rows, n_features), dtype=space.dtype, device=space.device)
    blocks = []
    guard = None
    for start in range(0, n_samples, rows):
        stop = min(start + rows, n_samples)
        w = None if sample_weight is None else sample_weight[start:stop]
        block = _block_moments(space, X[start:stop, ...], shift, w, careful, work)
        blocks.append(block)
        if block[2] is not None:
            guard = block[2] if guard is None else guard + block[2]
    count = sum(block[1] for block in blocks)
    block_weights = [b[0].weight for b in blocks]
    if all(isinstance(b, float) for b in block_weights):
        weights = xp.asarray(block_weights, dtype=space.dtype, device=space.device)
        weights = xp.broadcast_to(weights[:, None], (len(blocks), n_features))
    else:
        weights = xp.stack(
            [
                xp.broadcast_to(
                    xp.asarray(b, dtype=space.dtype, device=space.device),
                    (n_features,),
                )
                for b in block_weights
            ]
        )
    means = xp.stack([b[0].mean for b in blocks])
    variances = xp.stack([b[0].var for b in blocks])
    weight = xp.sum(weights, axis=0)
    fraction = weights / _nonzero(xp, weight)
    mean = xp.sum(fraction * means, axis=0)
    spread = means - mean
    var = xp.sum(fraction * (variances + spread * spread), axis=0)
    return Moments(weight, mean, var), count, guard


def _block_moments(
    space: Space,
    X: NamespaceArray,
    shift: NamespaceArray,
    sample_weight: NamespaceArray | None,
    careful: bool,
    work: NamespaceArray | None = None,
) -> tuple[XpMoments, Any, Any]:
    """Moments of one block (see :func:`batch_moments`); ``work``, if given,
    is an array of at least X's shape in the accumulation dtype to compute in."""
    xp = space.xp
    n_samples = X.shape[0]
    w = sample_weight
    if (
        not careful
        and w is None
        and n_samples > _SMALL_BLOCK
        and X.dtype != space.dtype
        and not space.compensated
    ):
        return _wide_block_moments(space, X, shift, work)
    # Into the accumulation dtype (type promotion), exact for float32 data
    # and a float64 shift.
    d = X - shift
    sums = _pairwise_column_sums if space.compensated else _dot_column_sums
    if not careful:
        if w is None:
            if space.compensated or n_samples > _SMALL_BLOCK:
                mean = sums(space, w, d) / n_samples
                d -= mean
                d *= d
                var = sums(space, w, d) / n_samples
            else:  # one call each, for the small batches of a training loop
                mean = xp.mean(d, axis=0)
                d -= mean
                d *= d
                var = xp.mean(d, axis=0)
            return Moments(float(n_samples), mean, var), n_samples, None
        weight = xp.sum(w)
        divisor = _nonzero(xp, weight)
        mean = sums(space, w, d) / divisor
        d -= mean
        guard = xp.sum(d)
        d *= d
        return Moments(weight, mean, sums(space, w, d) / divisor), n_samples, guard
    present = ~xp.isnan(d)
    d = _where(xp, present, d, 0.0)
    count = xp.sum(xp.astype(present, xp.int64), axis=0)
    weight = sums(space, w, xp.astype(present, space.dtype))
    divisor = _nonzero(xp, weight)
    mean = sums(space, w, d) / divisor
    d = _where(xp, present, d - mean, 0.0)
    d *= d
    return Moments(weight, mean, sums(space, w, d) / divisor), count, None


def _wide_block_moments(
    space: Space,
    X: NamespaceArray,
    shift: NamespaceArray,
    work: NamespaceArray | None = None,
) -> tuple[XpMoments, int, None]:
    """The fast path's moments of a large block of float32 data in float64.

    The first pass sums the values themselves rather than ``x - shift``: a
    float64 sum of float32 values errs by far less than the values' own
    float32 rounding, and this spares a pass of mixed-dtype arithmetic,
    which costs more than the rest of the block in some libraries. The
    second pass takes the deviations from the mean, as always.
    """
    xp = space.xp
    n_samples = X.shape[0]
    if work is None:
        d = xp.astype(X, space.dtype)
    else:
        d = work[:n_samples, ...]
        d[...] = X
    ones = _ones(space, n_samples)
    mean = (ones @ d) / n_samples - shift
    d -= shift + mean
    d *= d
    return Moments(float(n_samples), mean, (ones @ d) / n_samples), n_samples, None


# Up to this many rows, a library's own mean costs fewer calls than a matrix
# product; beyond, the matrix product is faster (BLAS).
_SMALL_BLOCK = 256


def _dot_column_sums(
    space: Space, w: NamespaceArray | None, d: NamespaceArray
) -> NamespaceArray:
    """``sum_i w_i d_i`` per column (``w`` None for ones), as a matrix
    product: fast on every device, and float64 makes its rounding moot."""
    if w is None:
        w = _ones(space, d.shape[0])
    return w @ d


def _pairwise_column_sums(
    space: Space, w: NamespaceArray | None, d: NamespaceArray
) -> NamespaceArray:
    """``sum_i w_i d_i`` per column by pairwise summation, whose rounding
    error grows as ``log2(n)`` rather than ``n``: float32 accumulation must
    not depend on how a library orders its sums."""
    xp = space.xp
    a = d if w is None else w[:, None] * d
    while a.shape[0] > 1:
        n = a.shape[0]
        half = a[0 : n - 1 : 2, ...] + a[1:n:2, ...]
        a = half if n % 2 == 0 else xp.concat([half, a[n - 1 :, ...]], axis=0)
    return a[0, ...]


def merge_moments(space: Space, old: XpMoments, new: XpMoments) -> XpMoments:
    """Combine the moments of two disjoint sets of samples (same shift).

    The formula of :func:`sknorm._stats.merge_moments`::

        W = W_a + W_b,  f_a = W_a / W,  f_b = W_b / W
        delta = mean_b - mean_a
        mean = mean_a + f_b * delta
        var = var_a + (f_b * (var_b - var_a) + (f_a * delta) * (f_b * delta))

    In a compensated space, ``W``, ``mean`` and ``var`` of ``old`` are
    (hi, lo) pairs and the three sums above are error-free; the increments
    themselves, of the order of the batch's share of the statistics, are
    rounded once.
    """
    xp = space.xp
    if space.compensated:
        return _merge_compensated(xp, old, new)
    weight = old.weight + new.weight
    delta = new.mean - old.mean
    if isinstance(new.weight, float) and new.weight > 0:
        # A batch without NaN: no feature has W == 0. (An array numerator
        # divides faster than a Python number in some libraries.)
        frac_new = xp.full_like(weight, new.weight) / weight
        frac_old = old.weight / weight
    else:
        divisor = _nonzero(xp, weight)
        frac_new = new.weight / divisor
        frac_old = old.weight / divisor
    shift_new = delta * frac_new
    mean = old.mean + shift_new
    var = old.var + (frac_new * (new.var - old.var) + (frac_old * delta) * shift_new)
    return Moments(weight, mean, var)


def _merge_compensated(xp: ArrayNamespace, old: XpMoments, new: XpMoments) -> XpMoments:
    if getattr(new.weight, "ndim", 0) == 2:
        weight = _pair_add(
            xp, _pair_add(xp, old.weight, new.weight[0, ...]), new.weight[1, ...]
        )
    else:
        weight = _pair_add(xp, old.weight, new.weight)
    divisor = _nonzero(xp, weight[0, ...])
    frac_new = _value(new.weight) / divisor
    frac_old = _value(old.weight) / divisor
    delta = (_value(new.mean) - old.mean[0, ...]) - old.mean[1, ...]
    mean = _pair_add(xp, old.mean, delta * frac_new)
    increment = frac_new * (_value(new.var) - _value(old.var)) + (frac_old * delta) * (
        frac_new * delta
    )
    return Moments(weight, mean, _pair_add(xp, old.var, increment))


def _decay(space: Space, moments: XpMoments, factor: float) -> XpMoments:
    """Scale every weight by ``factor``; a weight that underflows empties its set."""
    xp = space.xp
    if space.compensated:
        weight = _pair_scale(xp, moments.weight, factor)
        empty = weight[0, ...] == 0
    else:
        weight = moments.weight * factor
        empty = weight == 0
    return Moments(
        weight,
        _where(xp, empty, 0.0, moments.mean),
        _where(xp, empty, 0.0, moments.var),
    )


def _has_data(state: XpStreamState | XpEmaState) -> NamespaceArray:
    """Features that have statistics: a weight, or a momentum update."""
    if isinstance(state, EmaState):
        return state.mean_updates > 0
    weight = state.moments.weight
    return (weight[0, ...] if weight.ndim == 2 else weight) > 0


def _anchor(
    space: Space, shift: NamespaceArray, has_data: NamespaceArray, X: NamespaceArray
) -> NamespaceArray:
    """The shift, with every feature that has no data yet anchored at its
    first non-NaN value in X (0 if it has none), as
    :func:`sknorm._stats._anchor` chooses it, without leaving the device."""
    xp = space.xp
    n_samples, n_features = X.shape
    present = xp.astype(~xp.isnan(X), xp.int8)
    first = xp.argmax(present, axis=0)
    columns = xp.arange(n_features, dtype=first.dtype, device=space.device)
    values = xp.take(xp.reshape(X, (-1,)), first * n_features + columns)
    values = xp.astype(_where(xp, xp.isnan(values), 0.0, values), space.dtype)
    return _where(xp, has_data, shift, values)


# -- exact and half-life modes -------------------------------------------------------


def empty_stream_state(space: Space, n_features: int) -> XpStreamState:
    """The state of a stream that has seen nothing."""
    xp = space.xp
    zeros = xp.zeros(
        _moment_shape(space, n_features), dtype=space.dtype, device=space.device
    )
    return StreamState(
        xp.zeros(n_features, dtype=space.dtype, device=space.device),
        Moments(zeros, zeros, zeros),
        xp.zeros(n_features, dtype=xp.int64, device=space.device),
        0,
    )


def _absorb(
    space: Space,
    old: XpStreamState,
    X: NamespaceArray,
    sample_weight: NamespaceArray | None,
    settled: bool,
    careful: bool,
) -> tuple[XpStreamState, Any]:
    """Anchor the features without data, then merge the batch's moments.

    A feature without data has zero moments, so its re-anchoring needs no
    rebase of the old moments.
    """
    shift = old.shift if settled else _anchor(space, old.shift, _has_data(old), X)
    new, count, guard = batch_moments(space, X, shift, sample_weight, careful=careful)
    updated = StreamState(
        shift,
        merge_moments(space, old.moments, new),
        old.count + count,
        old.n_rows + X.shape[0],
    )
    return updated, guard


def update_exact(
    space: Space,
    old: XpStreamState,
    X: NamespaceArray,
    sample_weight: NamespaceArray | None = None,
    *,
    settled: bool = False,
    careful: bool = False,
) -> tuple[XpStreamState, Any]:
    """Exact mode: the statistics of every sample seen (see
    :func:`sknorm._stats.update_exact`).

    ``settled`` says that every feature already has data (no anchoring);
    ``careful`` as in :func:`batch_moments`. Returns the updated state and
    the guard of :func:`batch_moments`.
    """
    return _absorb(space, old, _detached(X), sample_weight, settled, careful)


def half_life_row_weights(
    space: Space, n_rows: int, half_life: float
) -> NamespaceArray:
    """Weights ``2**(-age / half_life)`` of a batch's rows, the last row newest."""
    xp = space.xp
    age = xp.arange(n_rows - 1, -1, -1, dtype=space.dtype, device=space.device)
    return xp.exp(age * (-math.log(2.0) / half_life))


def update_half_life(
    space: Space,
    old: XpStreamState,
    X: NamespaceArray,
    half_life: float,
    sample_weight: NamespaceArray | None = None,
    *,
    settled: bool = False,
    careful: bool = False,
) -> tuple[XpStreamState, Any]:
    """Half-life mode: a sample of age ``a`` rows has weight
    ``2**(-a / half_life)`` (see :func:`sknorm._stats.update_half_life`)."""
    n_rows = X.shape[0]
    row_weight = half_life_row_weights(space, n_rows, half_life)
    if sample_weight is not None:
        row_weight = row_weight * sample_weight
    aged = old._replace(
        moments=_decay(space, old.moments, 2.0 ** (-n_rows / half_life))
    )
    return _absorb(space, aged, _detached(X), row_weight, settled, careful)


def merge_stream_states(
    space: Space,
    old: XpStreamState,
    new: XpStreamState,
    half_life: float | None = None,
) -> XpStreamState:
    """Combine the states of two disjoint parts of a stream (``new`` later,
    which matters with ``half_life``), as
    :func:`sknorm._stats.merge_stream_states`."""
    xp = space.xp
    old_moments = old.moments
    if half_life is not None:
        old_moments = _decay(space, old_moments, 2.0 ** (-new.n_rows / half_life))
    old_has = _has_data(old._replace(moments=old_moments))
    shift = _where(xp, old_has, old.shift, new.shift)
    merged = merge_moments(
        space,
        _rebase(space, old_moments, old.shift, shift),
        _rebase(space, new.moments, new.shift, shift),
    )
    return StreamState(shift, merged, old.count + new.count, old.n_rows + new.n_rows)


def _rebase(
    space: Space,
    moments: XpMoments,
    old_shift: NamespaceArray,
    new_shift: NamespaceArray,
) -> XpMoments:
    """Moments relative to ``old_shift`` expressed relative to ``new_shift``."""
    xp = space.xp
    if space.compensated:
        has = moments.weight[0, ...] > 0
        hi, lo = _two_sum(old_shift, -new_shift)
        mean = _pair_add(xp, _pair_add(xp, moments.mean, hi), lo)
        return Moments(moments.weight, _where(xp, has, mean, 0.0), moments.var)
    has = moments.weight > 0
    mean = _where(xp, has, moments.mean + (old_shift - new_shift), 0.0)
    return Moments(moments.weight, mean, moments.var)


# -- momentum mode ---------------------------------------------------------------------


def empty_ema_state(space: Space, n_features: int) -> XpEmaState:
    """The momentum state of a stream that has seen nothing."""
    xp = space.xp
    zeros = xp.zeros(n_features, dtype=space.dtype, device=space.device)
    counts = xp.zeros(n_features, dtype=xp.int64, device=space.device)
    return EmaState(zeros, zeros, zeros, counts, counts, zeros, counts, 0)


def update_momentum(
    space: Space,
    old: XpEmaState,
    X: NamespaceArray,
    momentum: float,
    sample_weight: NamespaceArray | None = None,
    *,
    settled: bool = False,
    careful: bool = False,
) -> tuple[XpEmaState, Any]:
    """Momentum mode, one update per batch (see
    :func:`sknorm._stats.update_momentum`)::

        mean <- (1 - momentum) * mean + momentum * batch_mean
        var  <- (1 - momentum) * var  + momentum * batch_var

    with the unbiased batch variance; a feature's first batch sets the
    statistics. The running mean and variance forget their rounding errors,
    so they are not compensated on a float32 device.
    """
    xp = space.xp
    X = _detached(X)
    has_data = old.mean_updates > 0
    shift = old.shift if settled else _anchor(space, old.shift, has_data, X)
    new, count, guard = batch_moments(space, X, shift, sample_weight, careful=careful)
    # Features without updates have mean 0, so anchoring needs no rebase.
    if isinstance(new.weight, float):
        # An unweighted batch without NaN (of 2 rows or more): it updates
        # both statistics of every feature.
        batch_var = new.var * (new.weight / (new.weight - 1.0))
        has_mean = has_var = 1
    else:
        # Bessel's correction M2 / (W - 1) = var * (W / (W - 1)), where W > 1.
        batch_var = new.var * (new.weight / _nonzero(xp, new.weight - 1.0))
        has_mean = new.weight > 0
        has_var = new.weight > 1
    mean = (1 - momentum) * old.mean + momentum * new.mean
    var = (1 - momentum) * old.var + momentum * batch_var
    if not settled:
        mean = _where(xp, has_data, mean, new.mean)
        var = _where(xp, old.var_updates > 0, var, batch_var)
    if not isinstance(has_mean, int):
        mean = _where(xp, has_mean, mean, old.mean)
        var = _where(xp, has_var, _where(xp, var < 0, 0.0, var), old.var)
        has_mean = xp.astype(has_mean, xp.int64)
        has_var = xp.astype(has_var, xp.int64)
    mean_updates = old.mean_updates + has_mean
    var_updates = old.var_updates + has_var
    updated = EmaState(
        shift,
        mean,
        var,
        mean_updates,
        var_updates,
        old.weight + new.weight,
        old.count + count,
        old.n_rows + X.shape[0],
    )
    return updated, guard


# -- what is published ---------------------------------------------------------------


def overflowed(space: Space, state: XpStreamState | XpEmaState) -> NamespaceArray:
    """Features whose statistics are no longer finite numbers (device bools)."""
    xp = space.xp
    if isinstance(state, EmaState):
        bad_mean = (state.mean_updates > 0) & ~xp.isfinite(state.shift + state.mean)
        bad_var = (state.var_updates > 0) & ~xp.isfinite(state.var)
        return bad_mean | bad_var
    m = state.moments
    finite = xp.isfinite(state.shift + _value(m.mean)) & xp.isfinite(_value(m.var))
    return _has_data(state) & ~finite


def settled(space: Space, state: XpStreamState | XpEmaState) -> NamespaceArray:
    """Whether every feature has data (a 0-d device bool)."""
    xp = space.xp
    if isinstance(state, EmaState):
        return xp.all((state.mean_updates > 0) & (state.var_updates > 0))
    return xp.all(_has_data(state))


def checksum(space: Space, state: XpStreamState | XpEmaState) -> NamespaceArray:
    """A 0-d array that is finite when no variance is NaN or infinite (a NaN
    or infinity in a batch reaches them), and not finite otherwise or when
    their sum overflows (a false alarm, settled by the careful path)."""
    var = state.var if isinstance(state, EmaState) else state.moments.var
    return space.xp.sum(var)


def state_mean_var(
    space: Space, state: XpStreamState | XpEmaState, settled: bool = False
) -> tuple[NamespaceArray, NamespaceArray]:
    """Mean and variance of the stream, fresh arrays; NaN for a feature
    without data (see :func:`sknorm._stats.state_mean_var`). ``settled``
    says that every feature has data."""
    xp = space.xp
    if isinstance(state, EmaState):
        mean = state.shift + state.mean
        if settled:
            return mean, _copy(xp, state.var)
        return (
            _where(xp, state.mean_updates > 0, mean, xp.nan),
            _where(xp, state.var_updates > 0, state.var, xp.nan),
        )
    m = state.moments
    mean = state.shift + _value(m.mean)
    var = _value(m.var)
    if settled:
        return mean, (var if space.compensated else _copy(xp, var))
    has_data = _has_data(state)
    return (
        _where(xp, has_data, mean, xp.nan),
        _where(xp, has_data, _where(xp, var < 0, 0.0, var), xp.nan),
    )


def weight_of(space: Space, state: XpStreamState | XpEmaState) -> NamespaceArray:
    """Total weight behind each feature's statistics, a fresh array."""
    if isinstance(state, EmaState):
        return _copy(space.xp, state.weight)
    weight = state.moments.weight
    return _value(weight) if space.compensated else _copy(space.xp, weight)


def scale_from_var(
    xp: ArrayNamespace, var: NamespaceArray, eps: float
) -> NamespaceArray:
    """``sqrt(var + eps)``, with 1.0 where that is 0 (see
    :func:`sknorm._floats.scale_from_var`)."""
    if eps:
        return xp.sqrt(var + eps)  # never 0
    scale = xp.sqrt(var)
    return scale + xp.astype(scale == 0, scale.dtype)


# -- transforms ----------------------------------------------------------------------


def exact_center(
    space: Space, state: XpStreamState | XpEmaState
) -> tuple[NamespaceArray, NamespaceArray] | None:
    """The float32 pair ``(hi, lo)`` of ``shift + mean`` of a compensated
    exact or half-life state (None for other states): the mean to twice
    float32's precision."""
    if not isinstance(state, StreamState) or state.moments.mean.ndim != 2:
        return None
    s, e = _two_sum(state.shift, state.moments.mean[0, ...])
    return _two_sum(s, e + state.moments.mean[1, ...])


def center_parts(
    space: Space,
    mean: NamespaceArray,
    dtype: Any,
    exact: tuple[NamespaceArray, NamespaceArray] | None = None,
) -> tuple[NamespaceArray, NamespaceArray | None]:
    """``(hi, lo)`` in ``dtype`` whose sum is ``mean`` to the accumulation's
    precision (``lo`` None when ``hi`` alone is).

    For float32 data and a float64 mean, ``x - hi - lo`` stays accurate when
    the mean is large (``1e6 + N(0, 1)``), as with
    :func:`sknorm._floats.split_float32`. On a device without float64,
    ``exact`` is the pair of :func:`exact_center`, which serves the same end.
    """
    xp = space.xp
    if dtype == space.dtype:
        if exact is None:
            return mean, None
        hi, lo = exact
        return _where(xp, xp.isnan(mean), mean, hi), lo
    hi = xp.astype(mean, dtype)
    lo = xp.astype(mean - xp.astype(hi, space.dtype), dtype)
    return hi, lo


def normalize_columns(
    xp: ArrayNamespace,
    X: NamespaceArray,
    center: NamespaceArray | None,
    center_lo: NamespaceArray | None,
    inv_scale: NamespaceArray | None,
    bounds: tuple[NamespaceArray, NamespaceArray] | None,
    in_place: bool,
) -> NamespaceArray:
    """``clip((X - center - center_lo) * inv_scale)`` column-wise, like
    :func:`sknorm._floats.normalize_columns`; None skips a step.

    ``bounds`` are the 0-d arrays ``(-clip, clip)`` of :func:`clip_bounds`.
    ``in_place`` writes into X (never do it for an array that autograd
    tracks); otherwise X is left alone, and the result keeps X's autograd
    history, so that it is differentiable with respect to X.
    """
    out = X
    owned = in_place
    if center is not None:
        if owned:
            out -= center
        else:
            out, owned = out - center, True
        if center_lo is not None:
            out -= center_lo
    if inv_scale is not None:
        if owned:
            out *= inv_scale
        else:
            out, owned = out * inv_scale, True
    if bounds is not None:
        # maximum/minimum rather than clip, which some versions of
        # array-api-compat implement with boolean indexing (a device read).
        clipped = xp.minimum(xp.maximum(out, bounds[0]), bounds[1])
        if in_place:
            out[...] = clipped
        else:
            out, owned = clipped, True
    return out if owned else _copy(xp, X)


def clip_bounds(
    space: Space, clip: float | None, dtype: Any
) -> tuple[NamespaceArray, NamespaceArray] | None:
    """``(-clip, clip)`` as 0-d arrays of ``dtype`` on the space's device."""
    if clip is None:
        return None
    xp = space.xp
    return tuple(
        xp.asarray(bound, dtype=dtype, device=space.device) for bound in (-clip, clip)
    )


def denormalize_columns(
    xp: ArrayNamespace,
    X: NamespaceArray,
    scale: NamespaceArray | None,
    center: NamespaceArray | None,
    center_lo: NamespaceArray | None,
    in_place: bool,
) -> NamespaceArray:
    """``X * scale + center + center_lo`` column-wise, the inverse of
    :func:`normalize_columns` without clipping; same conventions."""
    out = X
    owned = in_place
    if scale is not None:
        if owned:
            out *= scale
        else:
            out, owned = out * scale, True
    if center is not None:
        if owned:
            out += center
        else:
            out, owned = out + center, True
        if center_lo is not None:
            out += center_lo
    return out if owned else _copy(xp, X)


# -- per-sample statistics (layer and group normalization) ---------------------------


def group_moments(
    space: Space, X: NamespaceArray, n_groups: int
) -> tuple[NamespaceArray, NamespaceArray, NamespaceArray, NamespaceArray]:
    """Mean and biased variance of each group of each row, NaN-aware, in two
    passes in the accumulation dtype (see
    :func:`sknorm._rowstats.dense_group_moments`).

    Returns ``mean, var`` of shape (n_samples, n_groups) (NaN for a group
    without values), the deviations ``x - mean`` of shape (n_samples,
    n_groups, group_size) (0 where x is NaN) and the mask of missing values.
    Differentiable with respect to X.
    """
    xp = space.xp
    n_samples, n_features = X.shape
    group_size = n_features // n_groups
    d = xp.reshape(xp.astype(X, space.dtype), (n_samples, n_groups, group_size))
    missing = xp.isnan(d)
    d = _where(xp, missing, 0.0, d)
    count = group_size - xp.sum(xp.astype(missing, space.dtype), axis=2)
    has_values = count > 0
    divisor = _nonzero(xp, count)
    mean = xp.sum(d, axis=2) / divisor
    d = _where(xp, missing, 0.0, d - mean[..., None])
    var = xp.sum(d * d, axis=2) / divisor
    return (
        _where(xp, has_values, mean, xp.nan),
        _where(xp, has_values, var, xp.nan),
        d,
        missing,
    )


def normalize_dense_groups(
    space: Space,
    X: NamespaceArray,
    n_groups: int,
    eps: float,
    with_mean: bool,
    with_std: bool,
) -> tuple[NamespaceArray, tuple[NamespaceArray, NamespaceArray]]:
    """Center and scale each group of each row (see
    :func:`sknorm._rowstats.normalize_dense_groups`).

    Returns the result in the accumulation dtype, NaN where X is NaN, and
    the ``(center, scale)`` applied, arrays of shape (n_samples, n_groups).
    """
    xp = space.xp
    n_samples, n_features = X.shape
    shape = (n_samples, n_groups)
    zeros = xp.zeros(shape, dtype=space.dtype, device=space.device)
    ones = xp.ones(shape, dtype=space.dtype, device=space.device)
    if not (with_mean or with_std):
        return xp.astype(X, space.dtype), (zeros, ones)
    mean, var, deviation, missing = group_moments(space, X, n_groups)
    if with_mean:
        z, center = deviation, mean
    else:
        z = xp.reshape(xp.astype(X, space.dtype), deviation.shape)
        center = zeros
    if with_std:
        scale = scale_from_var(xp, var, eps)
        z = z / scale[..., None]
    else:
        scale = ones
    z = _where(xp, missing, xp.nan, z)
    return xp.reshape(z, (n_samples, n_features)), (center, scale)


def invert_dense_groups(
    space: Space, Z: NamespaceArray, center: NamespaceArray, scale: NamespaceArray
) -> NamespaceArray:
    """``z * scale + center`` for each group of each row, in the
    accumulation dtype (see :func:`sknorm._rowstats.invert_dense_groups`)."""
    xp = space.xp
    n_samples, n_features = Z.shape
    n_groups = center.shape[1]
    x = xp.reshape(
        xp.astype(Z, space.dtype), (n_samples, n_groups, n_features // n_groups)
    )
    x = (
        x * xp.astype(scale, space.dtype)[..., None]
        + xp.astype(center, space.dtype)[..., None]
    )
    return xp.reshape(x, (n_samples, n_features))


# -- NumPy states (checkpoints, moving an estimator) ---------------------------------


def _convert_ema(
    state: EmaState, floats: Callable[[Any], Any], ints: Callable[[Any], Any]
) -> EmaState:
    """``state`` with every float field passed through ``floats`` and every
    count through ``ints``: the conversion both directions share."""
    return EmaState(
        floats(state.shift),
        floats(state.mean),
        floats(state.var),
        ints(state.mean_updates),
        ints(state.var_updates),
        floats(state.weight),
        ints(state.count),
        int(state.n_rows),
    )


def state_to_numpy(
    state: XpStreamState | XpEmaState,
) -> StreamState | EmaState:
    """The same statistics as a NumPy state of :mod:`sknorm._stats` (float64;
    a compensated pair is summed exactly in float64)."""
    import numpy as np

    def floats(a: NamespaceArray) -> np.ndarray:
        values = np.asarray(to_numpy(a), dtype=np.float64)
        return values[0] + values[1] if values.ndim == 2 else values

    def ints(a: NamespaceArray) -> np.ndarray:
        return np.asarray(to_numpy(a), dtype=np.int64)

    if isinstance(state, EmaState):
        return _convert_ema(state, floats, ints)
    m = state.moments
    return StreamState(
        floats(state.shift),
        Moments(floats(m.weight), floats(m.mean), floats(m.var)),
        ints(state.count),
        int(state.n_rows),
    )


def state_from_numpy(
    space: Space,
    state: StreamState | EmaState,
    move: Callable[[np.ndarray], NamespaceArray],
) -> XpStreamState | XpEmaState:
    """A NumPy state of :mod:`sknorm._stats` in ``space``; ``move`` takes a
    NumPy array to the space's namespace and device."""
    import numpy as np

    xp = space.xp

    def floats(a: np.ndarray) -> NamespaceArray:
        return xp.astype(move(np.asarray(a, dtype=np.float64)), space.dtype)

    def ints(a: np.ndarray) -> NamespaceArray:
        return xp.astype(move(np.asarray(a, dtype=np.int64)), xp.int64)

    if isinstance(state, EmaState):
        return _convert_ema(state, floats, ints)
    m = state.moments
    weight = state_weight(m)
    if not space.compensated:
        return StreamState(
            floats(state.shift),
            Moments(floats(weight), floats(m.mean), floats(m.var)),
            ints(state.count),
            int(state.n_rows),
        )
    # The shift must be a float32 number: the mean follows it.
    shift = np.asarray(state.shift, dtype=np.float32).astype(np.float64)
    mean = np.where(weight > 0, m.mean + (state.shift - shift), 0.0)

    def pair(a: np.ndarray) -> NamespaceArray:
        hi = np.asarray(a, dtype=np.float32)
        lo = (a - hi).astype(np.float32)
        return xp.astype(move(np.stack([hi, lo])), space.dtype)

    return StreamState(
        floats(shift),
        Moments(pair(weight), pair(mean), pair(m.var)),
        ints(state.count),
        int(state.n_rows),
    )
