"""Compiled kernels: the ``numba`` backend of sknorm's statistics and transforms.

Imported only through :func:`sknorm._config.compiled_kernels`, never by
``import sknorm``. Every public function here has the contract of the NumPy
function it stands in for (named in its docstring) and computes the same
formulas, written once in :mod:`sknorm._stats`, :mod:`sknorm._floats` and
:mod:`sknorm._rowstats`; they agree to rounding (about 1e-15 relative).

What the compilation buys is the number of passes and calls, not other math:

- a ``partial_fit`` is one call that anchors new features, takes the batch's
  moments in blocks of rows that stay in cache (two passes per block: mean,
  then squared deviations from it, four rows at a time), merges the blocks
  and the batch into the running statistics (``merge_moments``) and returns
  the new state, with everything that is published (the exact and half-life
  modes; the momentum mode publishes in a second call). On small batches a
  call's cost is its allocations and returned arrays as much as its
  arithmetic: the update allocates one float and one integer array;
- a transform is one pass: centre (in two float32 parts for float32 data),
  scale and clip each value, and note whether X held an infinity; its
  constant arguments are prepared once per fitted state
  (``sknorm._floats.ColumnTransform``);
- layer and group normalization take each group's moments and write its
  output in one pass over each row.

The float64 accumulation, the anchoring (shift) and the two-pass moments are
those of the NumPy path, so the same precision guarantees hold. The kernels
are compiled on first use for each combination of dtypes and memory layouts
met (``cache=True`` keeps them on disk between processes), and release the
GIL. They run on the calling thread: on a shared 2-core machine, cutting
batches of 10**6 rows in two halves for two threads ran from 2x faster to
1.25x slower than one thread, depending on the other core's load, and no
faster in the median run; so no second thread is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np

from . import _stats
from ._stats import EmaState, Moments, StreamState

__all__ = [
    "publish",
    "update_stream",
    "update_momentum",
    "stream_mean_var",
    "ema_mean_var",
    "column_arguments",
    "transform_columns",
    "normalize_columns",
    "denormalize_columns",
    "normalize_dense_groups",
]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
# Sums along a row (layer and group statistics) may be reassociated so that
# they vectorize; NaN and infinity keep their IEEE meaning.
_jit_reassoc = numba.njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"}
)

_NO_WEIGHTS = np.empty(0)


# -- moments ---------------------------------------------------------------------------


@_jit
def _merge_into(weight, mean, var, new_weight, new_mean, new_var):
    """``merge_moments`` in place: ``(weight, mean, var)`` absorbs the new moments.

    See :func:`sknorm._stats.merge_moments` for the formula.
    """
    for j in range(weight.shape[0]):
        total = weight[j] + new_weight[j]
        if total != 0.0:
            frac_new = new_weight[j] / total
            frac_old = weight[j] / total
        else:
            frac_new = 0.0
            frac_old = 0.0
        delta = new_mean[j] - mean[j]
        mean[j] = mean[j] + delta * frac_new
        var[j] = var[j] + (
            frac_new * (new_var[j] - var[j]) + (frac_old * delta) * (frac_new * delta)
        )
        weight[j] = total


@_jit
def _rescaled_mean_square(X, start, stop, shift, mean, row_weight, uniform, j, weight):
    """Mean square deviation of column ``j`` of a block whose squares overflow.

    The deviations are scaled by a power of two (exact) before squaring, as
    in ``sknorm._stats._mean_square``; NaN is skipped. ``uniform``: every row
    has weight 1 (``row_weight`` is then not read).
    """
    largest = 0.0
    for i in range(start, stop):
        x = X[i, j]
        if x == x:
            d = abs((x - shift[j]) - mean)
            if d > largest:
                largest = d
    exponent = math.frexp(largest)[1]
    total = 0.0
    for i in range(start, stop):
        x = X[i, j]
        if x == x:
            d = math.ldexp((x - shift[j]) - mean, -exponent)
            w = 1.0 if uniform else row_weight[i - start]
            total += w * (d * d)
    return math.ldexp(total / weight, 2 * exponent)


@_jit
def _add_deviations(X, start, stop, shift, sums):
    """``sums += (X[start:stop] - shift).sum(axis=0)``, four rows at a time
    (a quarter of the loads and stores of ``sums``; pairwise within the four)."""
    n_features = X.shape[1]
    quads = stop - (stop - start) % 4
    for i in range(start, quads, 4):
        for j in range(n_features):
            c = shift[j]
            sums[j] += ((X[i, j] - c) + (X[i + 1, j] - c)) + (
                (X[i + 2, j] - c) + (X[i + 3, j] - c)
            )
    for i in range(quads, stop):
        for j in range(n_features):
            sums[j] += X[i, j] - shift[j]


@_jit
def _add_squared_deviations(X, start, stop, shift, mean, sums):
    """``sums += (((X[start:stop] - shift) - mean) ** 2).sum(axis=0)``, four
    rows at a time, as :func:`_add_deviations`."""
    n_features = X.shape[1]
    quads = stop - (stop - start) % 4
    for i in range(start, quads, 4):
        for j in range(n_features):
            c = shift[j]
            m = mean[j]
            d0 = (X[i, j] - c) - m
            d1 = (X[i + 1, j] - c) - m
            d2 = (X[i + 2, j] - c) - m
            d3 = (X[i + 3, j] - c) - m
            sums[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for i in range(quads, stop):
        for j in range(n_features):
            d = (X[i, j] - shift[j]) - mean[j]
            sums[j] += d * d


@_jit
def _batch_moments(
    X, sample_weight, half_life, block_bytes, shift, moments, count, work
):
    """Weighted moments of X relative to ``shift``, NaN-aware, in blocks of rows.

    ``sknorm._stats.batch_moments`` (with ``half_life > 0``, the row weights of
    ``half_life_row_weights`` times ``sample_weight``). Writes the weight,
    mean and variance of each feature into the rows of ``moments`` (shape
    (3, n_features)), adds the numbers of non-NaN values to ``count``, and
    returns whether some block's weighted sums were not finite (a NaN, an
    infinity or an overflow: where the NumPy path calls ``on_nonfinite``).
    ``work`` is scratch space of shape (4, n_features), given by the caller
    so that a call on a small batch allocates nothing but its result.
    """
    n_samples, n_features = X.shape
    # sknorm._stats.block_rows, from its byte budget (read at each call).
    block = max(1, block_bytes // (8 * max(n_features, 1)))
    weighted = sample_weight.shape[0] > 0
    # Rows all of weight 1 (exact mode without sample weights) skip the
    # products and need no array of row weights.
    uniform = not weighted and half_life <= 0.0
    block_weight = work[0]
    block_mean = work[1]
    block_var = work[2]
    sums = work[3]
    row_weight = np.empty(0 if uniform else min(block, n_samples))
    moments[:] = 0.0
    weight, mean, var = moments[0], moments[1], moments[2]
    nonfinite = False
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        if uniform:
            total_weight = float(stop - start)
        else:
            total_weight = 0.0
            for i in range(start, stop):
                w = 1.0
                if half_life > 0.0:
                    w = np.exp2(-float(n_samples - 1 - i) / half_life)
                if weighted:
                    w = w * sample_weight[i]
                row_weight[i - start] = w
                total_weight += w
        # First pass, assuming no NaN: a NaN or infinity anywhere in the
        # block (whatever its weight: 0 * NaN is NaN) makes a sum non-finite.
        sums[:] = 0.0
        if uniform:
            _add_deviations(X, start, stop, shift, sums)
        else:
            for i in range(start, stop):
                w = row_weight[i - start]
                for j in range(n_features):
                    sums[j] += w * (X[i, j] - shift[j])
        clean = True
        for j in range(n_features):
            if not math.isfinite(sums[j]):
                clean = False
        if clean:
            for j in range(n_features):
                block_weight[j] = total_weight
                block_mean[j] = sums[j] / total_weight if total_weight else 0.0
                count[j] += stop - start
            sums[:] = 0.0
            if uniform:
                _add_squared_deviations(X, start, stop, shift, block_mean, sums)
            else:
                for i in range(start, stop):
                    w = row_weight[i - start]
                    for j in range(n_features):
                        d = (X[i, j] - shift[j]) - block_mean[j]
                        sums[j] += w * (d * d)
        else:
            nonfinite = True
            block_weight[:] = 0.0
            sums[:] = 0.0
            for i in range(start, stop):
                w = 1.0 if uniform else row_weight[i - start]
                for j in range(n_features):
                    x = X[i, j]
                    if x == x:
                        sums[j] += w * (x - shift[j])
                        block_weight[j] += w
                        count[j] += 1
            for j in range(n_features):
                block_mean[j] = sums[j] / block_weight[j] if block_weight[j] else 0.0
            sums[:] = 0.0
            for i in range(start, stop):
                w = 1.0 if uniform else row_weight[i - start]
                for j in range(n_features):
                    x = X[i, j]
                    if x == x:
                        d = (x - shift[j]) - block_mean[j]
                        sums[j] += w * (d * d)
        for j in range(n_features):
            if block_weight[j] == 0.0:
                block_var[j] = 0.0
                continue
            block_var[j] = sums[j] / block_weight[j]
            if not math.isfinite(block_var[j]) and math.isfinite(block_mean[j]):
                block_var[j] = _rescaled_mean_square(
                    X,
                    start,
                    stop,
                    shift,
                    block_mean[j],
                    row_weight,
                    uniform,
                    j,
                    block_weight[j],
                )
        _merge_into(weight, mean, var, block_weight, block_mean, block_var)
    return nonfinite


@_jit
def _anchor_into(shift, has_data, X):
    """``sknorm._stats._anchor`` in place: the first non-NaN value of each
    feature whose ``has_data`` is 0 becomes its shift (0 if there is none)."""
    n_samples, n_features = X.shape
    if n_samples == 0:
        return
    for j in range(n_features):
        if has_data[j] != 0:
            continue
        shift[j] = 0.0
        for i in range(n_samples):
            x = X[i, j]
            if x == x:
                shift[j] = x
                break


# Rows of the one float array that the exact and half-life update returns.
_STATE_ROWS = 4  # the new shift, weight, mean and variance
_BATCH_ROW = 4  # the batch's weight, mean and variance
_PUBLISHED_ROW = 7  # mean_, var_, scale_ and weight_ (see publish)
_WORK_ROW = 11  # scratch space of _batch_moments
_STREAM_ROWS = 15


@_jit
def _prepare_stream(X, decay, shift, weight, mean, var):
    """The old moments aged by ``decay``, features without weight anchored on
    X: rows 0 to 3 (shift, weight, mean, variance) of a new state array whose
    other rows are described above."""
    n_features = shift.shape[0]
    state = np.empty((_STREAM_ROWS, n_features))
    for j in range(n_features):
        w = weight[j] * decay
        state[0, j] = shift[j]
        state[1, j] = w
        # A feature without weight has zero moments (decay_moments and
        # rebase_moments in the NumPy path).
        state[2, j] = mean[j] if w != 0.0 else 0.0
        state[3, j] = var[j] if w != 0.0 else 0.0
    _anchor_into(state[0], state[1], X)
    return state


@_jit
def _finish_stream(state):
    """Merge the batch's moments (rows 4 to 6) into the state (rows 1 to 3)."""
    _merge_into(state[1], state[2], state[3], state[4], state[5], state[6])


@_jit
def _stream_update(
    X,
    sample_weight,
    half_life,
    decay,
    block_bytes,
    shift,
    weight,
    mean,
    var,
    count,
    eps,
):
    """Exact and half-life modes: the new state after one batch, and what is
    published from it, in one call.

    ``update_exact`` (``half_life == 0``, ``decay == 1``) or
    ``update_half_life``: the old moments age by ``decay``, features without
    weight are anchored on the batch, and the batch's moments are merged in.
    Returns one float array whose rows are the new shift, weight, mean and
    variance, the batch's weight, mean and variance, then the published
    mean, variance, scale (with ``eps``) and weight (as
    :func:`_publish_stream`); the new counts; and a bit set: 1 for the
    non-finite flag of :func:`_batch_moments`, 2 if every count is equal, 4
    if the published variances sum to a finite number. One float and one
    integer array are all it allocates: on small batches, allocations and
    returned arrays are what a call costs.
    """
    state = _prepare_stream(X, decay, shift, weight, mean, var)
    new_count = count.copy()
    nonfinite = _batch_moments(
        X,
        sample_weight,
        half_life,
        block_bytes,
        state[0],
        state[_BATCH_ROW : _BATCH_ROW + 3],
        new_count,
        state[_WORK_ROW:],
    )
    _finish_stream(state)
    equal, finite = _publish_stream_into(
        state[_PUBLISHED_ROW : _PUBLISHED_ROW + 4],
        state[0],
        state[1],
        state[2],
        state[3],
        new_count,
        eps,
    )
    return state, new_count, nonfinite | equal << 1 | finite << 2


# Rows of the float array that the momentum update returns: the new shift,
# mean and variance (0 to 2), the batch's weight, mean and variance (3 to 5),
# the new weight (6), the published mean, variance, scale and weight (7 to
# 10) and scratch space (11 to 14).
_MOMENTUM_PUBLISHED_ROW = 7
_MOMENTUM_WORK_ROW = 11
_MOMENTUM_ROWS = 15


@_jit
def _prepare_momentum(X, shift, mean_updates):
    """Row 0 of a new momentum state array: the shift, features without
    updates anchored on X; rows 3 to 5 will hold the batch's moments."""
    floats = np.empty((_MOMENTUM_ROWS, shift.shape[0]))
    floats[0] = shift
    _anchor_into(floats[0], mean_updates, X)
    return floats


@_jit
def _finish_momentum(
    floats, ints, momentum, shift, mean, var, mean_updates, var_updates
):
    """Blend the batch's moments (rows 3 to 5) into the running mean and
    variance (rows 1 and 2) and count the updates (rows 0 and 1 of ints)."""
    new_shift = floats[0]
    keep = 1.0 - momentum
    for j in range(new_shift.shape[0]):
        old_mean = mean[j] + (shift[j] - new_shift[j]) if mean_updates[j] > 0 else 0.0
        w = floats[3, j]
        # Bessel's correction, M2 / (W - 1) = var * (W / (W - 1)).
        batch_unbiased = floats[5, j] * (w / (w - 1.0)) if w != 1.0 else np.inf
        if w > 0.0:
            if mean_updates[j] > 0:
                floats[1, j] = keep * old_mean + momentum * floats[4, j]
            else:
                floats[1, j] = floats[4, j]
        else:
            floats[1, j] = old_mean
        if w > 1.0:
            if var_updates[j] > 0:
                v = keep * var[j] + momentum * batch_unbiased
            else:
                v = batch_unbiased
            floats[2, j] = 0.0 if v < 0.0 else v
        else:
            floats[2, j] = var[j]
        ints[0, j] = mean_updates[j] + (w > 0.0)
        ints[1, j] = var_updates[j] + (w > 1.0)


@_jit
def _momentum_update(
    X,
    sample_weight,
    momentum,
    block_bytes,
    shift,
    mean,
    var,
    mean_updates,
    var_updates,
    weight,
    count,
    eps,
):
    """Momentum mode: ``sknorm._stats.update_momentum``, and what is
    published from it, in one call.

    Returns the float array whose rows are described above; one whose rows
    are the new mean_updates, var_updates, the batch's counts and the new
    counts; and the bit set of :func:`_stream_update`.
    """
    floats = _prepare_momentum(X, shift, mean_updates)
    ints = np.zeros((4, shift.shape[0]), dtype=np.int64)
    nonfinite = _batch_moments(
        X,
        sample_weight,
        0.0,
        block_bytes,
        floats[0],
        floats[3:6],
        ints[2],
        floats[_MOMENTUM_WORK_ROW:],
    )
    _finish_momentum(
        floats, ints, momentum, shift, mean, var, mean_updates, var_updates
    )
    for j in range(shift.shape[0]):
        floats[6, j] = weight[j] + floats[3, j]
        ints[3, j] = count[j] + ints[2, j]
    row = _MOMENTUM_PUBLISHED_ROW
    equal, finite = _publish_ema_into(
        floats[row : row + 4],
        floats[0],
        floats[1],
        floats[2],
        ints[0],
        ints[1],
        floats[6],
        ints[3],
        eps,
    )
    return floats, ints, nonfinite | equal << 1 | finite << 2


# Named tuples made without their Python-level constructors (the fields are
# given in order): on small batches that is a measurable share of a call.
_new_tuple = tuple.__new__


def update_stream(
    old: StreamState,
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    half_life: float | None,
    on_nonfinite: Callable[[], None] | None = None,
    eps: float = 0.0,
) -> tuple[StreamState, tuple]:
    """``update_exact`` (``half_life=None``) or ``update_half_life``, compiled.

    Returns the new state and the fields of ``sknorm._modes.Published`` for
    it (the scale with ``eps``), which the same call computes.
    """
    n_samples = X.shape[0]
    decay = 1.0 if half_life is None else 2.0 ** (-n_samples / half_life)
    moments = old.moments
    floats, count, flags = _stream_update(
        X,
        _NO_WEIGHTS if sample_weight is None else sample_weight,
        0.0 if half_life is None else half_life,
        decay,
        _stats._BLOCK_BYTES,
        old.shift,
        moments.weight,
        moments.mean,
        moments.var,
        old.count,
        float(eps),
    )
    if flags & 1 and on_nonfinite is not None:
        on_nonfinite()
    state = _new_tuple(
        StreamState,
        (
            floats[0],
            _new_tuple(Moments, (floats[1], floats[2], floats[3])),
            count,
            old.n_rows + n_samples,
        ),
    )
    published = _published_fields(
        floats, _PUBLISHED_ROW, count, flags & 2, flags & 4 != 0
    )
    return state, published


def _published_fields(
    floats: np.ndarray, row: int, count: np.ndarray, equal: int, finite: bool
) -> tuple:
    """The fields of ``sknorm._modes.Published``: rows ``row`` to ``row + 3``
    of ``floats`` (mean, variance, scale, weight), ``n_samples_seen_`` (an
    int when every feature's count is equal, else a copy of the counts) and
    ``finite``."""
    samples_seen = (
        int(count[0]) if equal and count.size else np.array(count, dtype=np.int64)
    )
    return (
        floats[row],
        floats[row + 1],
        floats[row + 2],
        floats[row + 3],
        samples_seen,
        finite,
    )


def update_momentum(
    old: EmaState,
    X: np.ndarray,
    momentum: float,
    sample_weight: np.ndarray | None = None,
    on_nonfinite: Callable[[], None] | None = None,
    eps: float = 0.0,
) -> tuple[EmaState, tuple]:
    """``sknorm._stats.update_momentum``, compiled; with the fields of
    ``sknorm._modes.Published`` for the new state, as :func:`update_stream`."""
    n_samples = X.shape[0]
    floats, ints, flags = _momentum_update(
        X,
        _NO_WEIGHTS if sample_weight is None else sample_weight,
        momentum,
        _stats._BLOCK_BYTES,
        old.shift,
        old.mean,
        old.var,
        old.mean_updates,
        old.var_updates,
        old.weight,
        old.count,
        float(eps),
    )
    if flags & 1 and on_nonfinite is not None:
        on_nonfinite()
    count = ints[3]
    state = _new_tuple(
        EmaState,
        (
            floats[0],
            floats[1],
            floats[2],
            ints[0],
            ints[1],
            floats[6],
            count,
            old.n_rows + n_samples,
        ),
    )
    published = _published_fields(
        floats, _MOMENTUM_PUBLISHED_ROW, count, flags & 2, flags & 4 != 0
    )
    return state, published


# -- publication -----------------------------------------------------------------------


@_jit
def _stream_mean_var(shift, weight, mean, var):
    n_features = shift.shape[0]
    out = np.empty((2, n_features))
    every = True
    for j in range(n_features):
        if weight[j] == 0.0:
            every = False
    for j in range(n_features):
        if weight[j] != 0.0:
            out[0, j] = shift[j] + mean[j]
            # merge_moments never makes var negative; the clamp is the NumPy
            # path's, for features that started late.
            out[1, j] = var[j] if every or not var[j] < 0.0 else 0.0
        else:
            out[0, j] = np.nan
            out[1, j] = np.nan
    return out


def stream_mean_var(state: StreamState) -> tuple[np.ndarray, np.ndarray]:
    """``sknorm._stats.state_mean_var`` for the exact and half-life modes."""
    m = state.moments
    mean, var = _stream_mean_var(state.shift, m.weight, m.mean, m.var)
    return mean, var


@_jit
def _ema_mean_var(shift, mean, var, mean_updates, var_updates):
    n_features = shift.shape[0]
    out = np.empty((2, n_features))
    for j in range(n_features):
        out[0, j] = shift[j] + mean[j] if mean_updates[j] > 0 else np.nan
        out[1, j] = var[j] if var_updates[j] > 0 else np.nan
    return out


def ema_mean_var(state: EmaState) -> tuple[np.ndarray, np.ndarray]:
    """``sknorm._stats.state_mean_var`` for the momentum mode."""
    mean, var = _ema_mean_var(
        state.shift, state.mean, state.var, state.mean_updates, state.var_updates
    )
    return mean, var


@_jit
def _scale(var, eps):
    """``scale_from_var`` of one variance."""
    s = math.sqrt(var + eps) if eps else math.sqrt(var)
    return 1.0 if s == 0.0 else s


@_jit
def _publish_stream(shift, weight, mean, var, count, eps):
    out = np.empty((4, shift.shape[0]))
    equal, finite = _publish_stream_into(out, shift, weight, mean, var, count, eps)
    return out, equal, finite


@_jit
def _publish_stream_into(out, shift, weight, mean, var, count, eps):
    """Rows of ``out``: the published mean, variance, scale and weight;
    returns whether every count is equal and whether the variances' sum is
    finite."""
    n_features = shift.shape[0]
    every = True
    for j in range(n_features):
        if weight[j] == 0.0:
            every = False
    equal = True
    total = 0.0
    for j in range(n_features):
        if weight[j] != 0.0:
            m = shift[j] + mean[j]
            v = var[j] if every or not var[j] < 0.0 else 0.0
        else:
            m = np.nan
            v = np.nan
        out[0, j] = m
        out[1, j] = v
        out[2, j] = _scale(v, eps)
        out[3, j] = weight[j]
        total += v
        equal = equal and count[j] == count[0]
    return equal, math.isfinite(total)


@_jit
def _publish_ema(shift, mean, var, mean_updates, var_updates, weight, count, eps):
    out = np.empty((4, shift.shape[0]))
    equal, finite = _publish_ema_into(
        out, shift, mean, var, mean_updates, var_updates, weight, count, eps
    )
    return out, equal, finite


@_jit
def _publish_ema_into(
    out, shift, mean, var, mean_updates, var_updates, weight, count, eps
):
    """:func:`_publish_stream_into` for the momentum mode."""
    n_features = shift.shape[0]
    equal = True
    total = 0.0
    for j in range(n_features):
        v = var[j] if var_updates[j] > 0 else np.nan
        out[0, j] = shift[j] + mean[j] if mean_updates[j] > 0 else np.nan
        out[1, j] = v
        out[2, j] = _scale(v, eps)
        out[3, j] = weight[j]
        total += v
        equal = equal and count[j] == count[0]
    return equal, math.isfinite(total)


def publish(state, eps):
    """``StatisticsMode.publish`` in one call: the fields of ``Published``."""
    if isinstance(state, EmaState):
        out, equal, finite = _publish_ema(
            state.shift,
            state.mean,
            state.var,
            state.mean_updates,
            state.var_updates,
            state.weight,
            state.count,
            float(eps),
        )
    else:
        m = state.moments
        out, equal, finite = _publish_stream(
            state.shift, m.weight, m.mean, m.var, state.count, float(eps)
        )
    return _published_fields(out, 0, state.count, equal, finite)


# -- column transforms -----------------------------------------------------------------


@_jit
def _affine_columns(X, out, center, center_lo, factor, clip, steps):
    """``out = clip(((X - center) - center_lo) * factor)``; whether X holds
    an infinity.

    ``steps`` is a bit set: 1 centre, 2 low part of the centre, 4 scale, 8
    clip; the arrays of the steps not taken are ignored. The arithmetic is in
    X's dtype, as in NumPy (the constants come in that dtype).
    """
    n_samples, n_features = X.shape
    has_center = steps & 1 != 0
    has_lo = steps & 2 != 0
    has_scale = steps & 4 != 0
    has_clip = steps & 8 != 0
    infinite = False
    for i in range(n_samples):
        for j in range(n_features):
            v = X[i, j]
            infinite |= abs(v) == np.inf
            if has_center:
                v = v - center[j]
                if has_lo:
                    v = v - center_lo[j]
            if has_scale:
                v = v * factor[j]
            if has_clip:
                # NaN stays NaN, as with np.clip.
                if v > clip:
                    v = clip
                elif v < -clip:
                    v = -clip
            out[i, j] = v
    return infinite


@_jit
def _unscale_columns(X, out, factor, center, center_lo, steps):
    """``out = (X * factor + center) + center_lo``; ``steps``: 1 centre, 2
    low part of the centre, 4 scale."""
    n_samples, n_features = X.shape
    has_center = steps & 1 != 0
    has_lo = steps & 2 != 0
    has_scale = steps & 4 != 0
    for i in range(n_samples):
        for j in range(n_features):
            v = X[i, j]
            if has_scale:
                v = v * factor[j]
            if has_center:
                v = v + center[j]
                if has_lo:
                    v = v + center_lo[j]
            out[i, j] = v


def _constant(values, dtype):
    return np.empty(0, dtype=dtype) if values is None else values


def column_arguments(center, center_lo, inv_scale, clip, dtype):
    """The constant arguments of the compiled column transform, for
    :func:`transform_columns` (see ``sknorm._floats.ColumnTransform``)."""
    steps = (
        (center is not None)
        | (center_lo is not None) << 1
        | (inv_scale is not None) << 2
        | (clip is not None) << 3
    )
    return (
        _constant(center, dtype),
        _constant(center_lo, dtype),
        _constant(inv_scale, dtype),
        dtype.type(0 if clip is None else clip),
        steps,
    )


def transform_columns(X, out, arguments, on_infinity=None):
    """``sknorm._floats.normalize_columns`` in one pass, with the constants
    prepared by :func:`column_arguments` for X's dtype."""
    if _affine_columns(X, out, *arguments) and on_infinity is not None:
        on_infinity()
    return out


def normalize_columns(X, out, center, center_lo, inv_scale, clip, on_infinity=None):
    """``sknorm._floats.normalize_columns``, in one pass."""
    arguments = column_arguments(center, center_lo, inv_scale, clip, X.dtype)
    return transform_columns(X, out, arguments, on_infinity)


def denormalize_columns(X, out, scale, center, center_lo):
    """``sknorm._floats.denormalize_columns``, in one pass."""
    steps = (
        (center is not None) | (center_lo is not None) << 1 | (scale is not None) << 2
    )
    dtype = X.dtype
    _unscale_columns(
        X,
        out,
        _constant(scale, dtype),
        _constant(center, dtype),
        _constant(center_lo, dtype),
        steps,
    )
    return out


# -- row (layer and group) statistics --------------------------------------------------


@_jit_reassoc
def _normalize_groups(X, n_groups, eps, with_mean, with_std, out, center, scale):
    """Each group of each row: two-pass float64 moments, then its output.

    ``sknorm._rowstats.normalize_dense_groups`` (with ``with_mean`` or
    ``with_std``), writing the result into ``out`` (X's dtype) and the
    applied statistics into ``center`` and ``scale``. Without centering the
    center is 0, without scaling the scale is 1: subtracting 0 and
    multiplying by 1 are exact, so one loop serves every case. Returns
    whether X holds an infinity.
    """
    n_samples, n_features = X.shape
    size = n_features // n_groups
    infinite = False
    # Loops of range(size) offset by first: range(first, first + size)
    # does not vectorize.
    for i in range(n_samples):
        for g in range(n_groups):
            first = g * size
            total = 0.0
            for j in range(size):
                total += np.float64(X[i, first + j])
            present = size
            clean = math.isfinite(total)
            if not clean:
                # A NaN or an infinity made the total non-finite (or it
                # overflowed): only then are the values looked at one by one.
                total = 0.0
                present = 0
                for j in range(size):
                    x = np.float64(X[i, first + j])
                    infinite |= abs(x) == np.inf
                    keep = x == x
                    total += x if keep else 0.0
                    present += keep
            mean = total / present if present else np.nan
            square = 0.0
            if clean:
                for j in range(size):
                    d = np.float64(X[i, first + j]) - mean
                    square += d * d
            else:
                for j in range(size):
                    x = np.float64(X[i, first + j])
                    d = x - mean
                    square += d * d if x == x else 0.0
            s = 1.0
            if with_std:
                s = math.sqrt(square / present + eps) if present else np.nan
                if s == 0.0:
                    s = 1.0
            c = mean if with_mean else 0.0
            center[i, g] = c
            scale[i, g] = s
            # Multiplying by the reciprocal (as the NumPy path does) is much
            # faster than dividing, and within one rounding of it.
            factor = 1.0 / s
            for j in range(size):
                out[i, first + j] = (np.float64(X[i, first + j]) - c) * factor
    return infinite


def normalize_dense_groups(X, n_groups, eps, with_mean, with_std, out, on_infinity):
    """``sknorm._rowstats.normalize_dense_groups`` (centering or scaling):
    writes into ``out`` and returns the center and scale of every group."""
    n_samples = X.shape[0]
    center = np.empty((n_samples, n_groups))
    scale = np.empty((n_samples, n_groups))
    infinite = _normalize_groups(
        X, n_groups, float(eps), bool(with_mean), bool(with_std), out, center, scale
    )
    if infinite and on_infinity is not None:
        on_infinity()
    return center, scale


# -- quantile sketches -----------------------------------------------------------------

# As in sknorm._kll: the 6 low bits of an order key carry the level.
_LEVEL_BITS = np.int64(63)


@_jit
def _level_key(key, h):
    """The key that orders items of all levels (``sknorm._kll._select_items``)."""
    return (key & ~_LEVEL_BITS) | h


@_jit
def _count_at_most(row, start, a, b, h, key):
    """``a`` plus the number of items of level ``h`` among ``row[start + a :
    start + b]`` (sorted) whose level key is at most ``key``."""
    n = b - a
    while n > 1:
        half = n >> 1
        if _level_key(row[start + a + half - 1], h) <= key:
            a += half
        n -= half
    if n == 1 and _level_key(row[start + a], h) <= key:
        a += 1
    return a


@_jit
def _weight_at_most(row, starts, used, n_used, key, first, last, split):
    """Weight of the items whose level key is at most ``key``, knowing that
    level ``h`` has ``first[h]`` such items and not more than ``last[h]``;
    each level's count is left in ``split``."""
    total = 0
    for u in range(n_used):
        h = used[u]
        split[h] = _count_at_most(row, starts[h], first[h], last[h], h, key)
        total += split[h] << h
    return total


@_jit
def _select_items(full, starts, counts, n, below, above):
    """``sknorm._kll._select_items`` without sorting all the items.

    Every level is a sorted sample of the same stream, so the item holding
    weighted position ``j`` of ``n`` lies near index ``j / n * count`` of
    each level. The items of the level that has the most (the grid) around
    that index bracket it: the weight of the items whose key is at most a
    grid item's is found by one binary search per level. A binary search
    between the brackets, with every level's range narrowed as it goes,
    finds the two neighbouring grid items between which the item lies, and
    the few items of other levels between them are walked in order. The item
    holding ``above`` (``below + 1`` or ``below``) is most often the same.
    """
    n_levels = starts.shape[0] - 1
    n_targets, n_features = below.shape
    out = np.empty((2, n_targets, n_features), dtype=np.int64)
    used = np.empty(n_levels, dtype=np.int64)
    first = np.empty(n_levels, dtype=np.int64)
    last = np.empty(n_levels, dtype=np.int64)
    split = np.empty(n_levels, dtype=np.int64)
    for f in range(n_features):
        row = full[f]
        n_used = 0
        grid = -1
        for h in range(n_levels):
            if counts[h, f] > 0:
                used[n_used] = h
                n_used += 1
                if grid < 0 or counts[h, f] > counts[grid, f]:
                    grid = h
        if grid < 0:
            out[:, :, f] = 0  # a feature without items: not read
            continue
        size = counts[grid, f]
        grid_row = row[starts[grid] : starts[grid] + size]
        for t in range(n_targets):
            weight = 0
            for side in range(2):
                target = below[t, f] if side == 0 else above[t, f]
                if side == 1 and weight > target:
                    out[1, t, f] = out[0, t, f]
                    break
                # Invariant: the items of level h with keys after grid item
                # lo - 1 and up to grid item hi are first[h]:last[h]; weight
                # is the weight of the items up to grid item lo - 1.
                guess = min(size - 1, (target * size) // max(n[f], 1))
                reach = 4
                while True:
                    lo = max(guess - reach, 0)
                    hi = min(guess + reach, size)
                    for u in range(n_used):
                        first[used[u]] = 0
                        last[used[u]] = counts[used[u], f]
                    weight = 0
                    if hi < size:
                        key = _level_key(grid_row[hi], grid)
                        if (
                            _weight_at_most(
                                row, starts, used, n_used, key, first, last, split
                            )
                            <= target
                        ):
                            reach *= 4
                            continue
                        for u in range(n_used):
                            last[used[u]] = split[used[u]]
                    if lo > 0:
                        key = _level_key(grid_row[lo - 1], grid)
                        weight = _weight_at_most(
                            row, starts, used, n_used, key, first, last, split
                        )
                        if weight > target:
                            reach *= 4
                            continue
                        for u in range(n_used):
                            first[used[u]] = split[used[u]]
                    break
                while lo < hi:
                    mid = (lo + hi) >> 1
                    key = _level_key(grid_row[mid], grid)
                    total = _weight_at_most(
                        row, starts, used, n_used, key, first, last, split
                    )
                    if total > target:
                        hi = mid
                        for u in range(n_used):
                            last[used[u]] = split[used[u]]
                    else:
                        lo = mid + 1
                        weight = total
                        for u in range(n_used):
                            first[used[u]] = split[used[u]]
                # Walk the items between the two grid items, in order.
                while True:
                    best = -1
                    best_key = 0
                    for u in range(n_used):
                        h = used[u]
                        if first[h] < last[h]:
                            key = _level_key(row[starts[h] + first[h]], h)
                            if best < 0 or key < best_key:
                                best = h
                                best_key = key
                    weight += np.int64(1) << best
                    if weight > target:
                        out[side, t, f] = row[starts[best] + first[best]]
                        break
                    first[best] += 1
    return out


def select_slotted_items(full, slot, counts, n, below, above):
    """``sknorm._kll._select_items``, compiled, with the levels' sorted keys
    side by side in ``full``, level ``h`` from column ``h * slot``."""
    starts = np.arange(0, (counts.shape[0] + 1) * slot, slot, dtype=np.int64)
    return _select_items(full, starts, counts, n, below, above)


def select_sketch_items(level_keys, counts, n, below, above):
    """``sknorm._kll._select_items``, compiled; ``n`` is the weight of each
    feature's items (``sketch_counts``)."""
    widths = [keys.shape[1] for keys in level_keys]
    starts = np.zeros(len(widths) + 1, dtype=np.int64)
    np.cumsum(widths, out=starts[1:])
    full = np.concatenate(level_keys, axis=1)
    return _select_items(full, starts, counts, n, below, above)
