"""Streaming moments: the pure math behind every sknorm statistics mode.

Nothing here knows about scikit-learn. Every function takes and returns small
immutable states of float64 NumPy arrays, one entry per feature.

Naming rule (as in scikit-learn's ``_incremental_mean_and_var``): ``old`` are the
statistics until now, ``new`` the increment, ``updated`` both together.

Precision. Each state keeps its moments relative to a per-feature ``shift``
(an anchor value taken from the data), so the quantities that are merged are of
the order of the standard deviation, not of the mean. Merging raw means of
data such as ``1e9 + N(0, 1)`` would lose nine digits in every difference of
means; merging shifted means loses none. Within a batch, moments are computed
in two passes (mean, then squared deviations from it), never as
``E[x**2] - E[x]**2``.

Range. The state holds the variance itself, not the sum of squared deviations
(``n`` times larger), and every formula is arranged so that no intermediate
exceeds the result: the statistics stay finite whenever the variance is
representable in float64 (a spread up to about 1e154), however many samples
were seen.

Speed. A large batch is processed in blocks of rows whose float64 work array
fits in a core's cache, and the blocks' moments are combined with the same
merge formula as batches (``merge_moments``), so a batch costs one read of its
memory and no temporary as large as itself. Whether a block holds NaN or
infinity is learned from its column sums, which the mean needs anyway.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple, ParamSpec, TypeVar, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ._typing import SparseMatrix

Array = NDArray[np.float64]

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "Moments",
    "StreamState",
    "EmaState",
    "batch_moments",
    "sparse_batch_moments",
    "merge_moments",
    "state_weight",
    "decay_moments",
    "rebase_moments",
    "half_life_row_weights",
    "empty_stream_state",
    "update_exact",
    "update_half_life",
    "merge_stream_states",
    "empty_ema_state",
    "update_momentum",
    "overflowed",
    "state_mean_var",
]


# The public entry points run silently: a NaN or infinity in the first pass's
# sums is handled right after (on_nonfinite and the NaN-aware pass), and a
# statistic that overflows is reported by the caller (see ``overflowed``),
# not by floating-point warnings from deep inside. One context per call, made
# afresh: NumPy 1.x keeps an errstate's saved state on the instance.
def _silent(func: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(func)
    def silent(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(over="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return silent


class Moments(NamedTuple):
    """Weighted moments of a set of samples, per feature, relative to a shift.

    ``weight`` is the sum of sample weights, ``mean`` the weighted mean of
    ``x - shift`` and ``var`` the weighted mean of squared deviations from that
    mean (the biased variance). A feature with ``weight == 0`` has
    ``mean == var == 0``.

    The moments of one batch without NaN hold a single float ``weight``, the
    same for every feature (it broadcasts in every formula here); a state's
    moments always hold one weight per feature (:func:`state_weight`).
    :mod:`sknorm._xp` keeps arrays of other namespaces in the same fields.
    """

    weight: Array | float
    mean: Array
    var: Array


def state_weight(moments: Moments) -> Array:
    """The weights of moments that are known to hold one per feature.

    Those of a state, or of blocks stacked row by row: only a batch's own
    moments may hold one float weight, and merging them into per-feature
    weights gives per-feature weights. A type checker cannot follow that
    reasoning, so this says it once.
    """
    return cast(Array, moments.weight)


# Bytes of float64 work per block of rows: small enough to stay in a core's
# L2 cache across the passes over the block, large enough that the per-block
# Python overhead is small next to the arithmetic.
_BLOCK_BYTES = 1 << 19


def block_rows(n_features: int) -> int:
    """Number of rows per block for batches of ``n_features`` features."""
    return max(1, _BLOCK_BYTES // (8 * max(n_features, 1)))


# Column sums are taken as ``ones @ block`` (BLAS), much faster than
# ``block.sum(axis=0)`` on small blocks; a read-only slice serves every block.
_ONES = np.ones(_BLOCK_BYTES // 8)
_ONES.setflags(write=False)


@_silent
def batch_moments(
    X: NDArray,
    shift: Array,
    sample_weight: Array | None = None,
    *,
    on_nonfinite: Callable[[], None] | None = None,
) -> tuple[Moments, NDArray[np.int64]]:
    """Moments of one batch, NaN-aware, in float64, in two passes.

    The batch is processed in blocks of :func:`block_rows` rows; the moments
    of the blocks are combined pairwise with :func:`merge_moments`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        NaN marks a missing value, which is ignored.
    shift : ndarray of shape (n_features,)
        Subtracted from every value before the moments are accumulated.
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative weights; None means all ones.
    on_nonfinite : callable or None
        Called once, with no argument, when the first block whose weighted
        column sums are not all finite is met: the block holds a NaN, an
        infinity, or values whose sum overflows. Without weights every
        infinity makes a sum infinite, so a caller can check for infinities
        only then (it may raise). With weights, a row of weight 0 may not
        reach the sums.

    Returns
    -------
    moments : Moments
        Moments of ``X - shift``.
    count : ndarray of shape (n_features,), int64
        Number of non-NaN values per feature.
    """
    moments, count = _batch_moments(X, shift, sample_weight, on_nonfinite)
    n_features = X.shape[1]
    if isinstance(moments.weight, float):
        moments = moments._replace(weight=np.full(n_features, moments.weight))
    if isinstance(count, int):
        count = np.full(n_features, count, dtype=np.int64)
    return moments, count


def _batch_moments(
    X: NDArray,
    shift: Array,
    sample_weight: Array | None,
    on_nonfinite: Callable[[], None] | None,
) -> tuple[Moments, NDArray[np.int64] | int]:
    """``batch_moments``, where a weight or count equal for every feature may
    be returned as a scalar (it broadcasts in every formula here)."""
    n_samples, n_features = X.shape
    rows = block_rows(n_features)
    if n_samples <= rows:
        moments, block_count, _ = _block_moments(
            X, shift, sample_weight, None, on_nonfinite
        )
        return moments, block_count
    n_blocks = -(-n_samples // rows)
    work = np.empty((rows, n_features))
    weight = np.empty((n_blocks, n_features))
    mean = np.empty((n_blocks, n_features))
    var = np.empty((n_blocks, n_features))
    count = np.zeros(n_features, dtype=np.int64)
    for i, start in enumerate(range(0, n_samples, rows)):
        stop = min(start + rows, n_samples)
        w = None if sample_weight is None else sample_weight[start:stop]
        block, block_count, finite = _block_moments(
            X[start:stop], shift, w, work[: stop - start], on_nonfinite
        )
        if not finite:
            on_nonfinite = None  # called once per batch
        weight[i], mean[i], var[i] = block
        count += block_count
    return _merge_blocks(weight, mean, var), count


def _merge_blocks(weight: Array, mean: Array, var: Array) -> Moments:
    """Merge block moments stacked row by row, pairwise, into one ``Moments``."""
    while weight.shape[0] > 1:
        n_blocks = weight.shape[0]
        even = n_blocks - n_blocks % 2
        merged = merge_moments(
            Moments(weight[0:even:2], mean[0:even:2], var[0:even:2]),
            Moments(weight[1:even:2], mean[1:even:2], var[1:even:2]),
        )
        blocks = (state_weight(merged), merged.mean, merged.var)
        if n_blocks % 2:
            blocks = (
                np.concatenate([blocks[0], weight[-1:]]),
                np.concatenate([blocks[1], mean[-1:]]),
                np.concatenate([blocks[2], var[-1:]]),
            )
        weight, mean, var = blocks
    return Moments(weight[0], mean[0], var[0])


def _block_moments(
    X: NDArray,
    shift: Array,
    sample_weight: Array | None,
    work: Array | None = None,
    on_nonfinite: Callable[[], None] | None = None,
) -> tuple[Moments, NDArray[np.int64] | int, bool]:
    """Two-pass moments of one block; also whether its column sums were finite.

    ``work``, if given, is a float64 array of X's shape that the block's
    deviations are written to. ``on_nonfinite`` is called before a block whose
    sums are not finite is accumulated. Without NaN, the weight and the count
    are the same for every feature and are returned as scalars.
    """
    n_samples = X.shape[0]
    w = _ONES[:n_samples] if sample_weight is None else sample_weight
    # Into a C-ordered array: the sums then do not depend on X's layout.
    d = np.subtract(X, shift, out=np.empty(X.shape) if work is None else work)
    total = np.dot(w, d)
    finite = math.isfinite(np.add.reduce(total))
    if finite and sample_weight is not None and np.count_nonzero(w) != n_samples:
        # BLAS may skip a row of weight 0, hiding a NaN in it from the sums.
        finite = math.isfinite(np.add.reduce(np.add.reduce(d)))
    if finite:
        # No NaN anywhere (a NaN would have propagated into the sums).
        weight = float(n_samples) if sample_weight is None else float(w.sum())
        if not weight:
            zeros = np.zeros_like(total)
            return Moments(weight, zeros, zeros), n_samples, True
        mean = total / weight
        d -= mean

        def deviations(columns: NDArray[np.intp]) -> Array:
            return (X[:, columns] - shift[columns]) - mean[columns]

        var = _mean_square(w, d, weight, deviations)
        return Moments(weight, mean, var), n_samples, True

    if on_nonfinite is not None:
        on_nonfinite()
    present = ~np.isnan(d)
    count = present.sum(axis=0, dtype=np.int64)
    d[~present] = 0.0
    if sample_weight is None:
        weights = count.astype(np.float64)
    else:
        weights = np.dot(w, present)
    mean = _safe_divide(np.dot(w, d), weights)
    d -= mean
    d[~present] = 0.0

    def present_deviations(columns: NDArray[np.intp]) -> Array:
        deviation = (X[:, columns] - shift[columns]) - mean[columns]
        return np.where(present[:, columns], deviation, 0.0)

    var = _mean_square(w, d, weights, present_deviations)
    return Moments(weights, mean, var), count, False


def _mean_square(
    w: Array,
    d: Array,
    weight: Array | float,
    deviations: Callable[[NDArray[np.intp]], Array],
) -> Array:
    """``sum_i w_i d_i**2 / weight`` per column; ``d`` is squared in place
    (in cache, that is a tenth of a large batch's time against a new array).
    ``deviations(columns)`` computes those columns of ``d`` again.

    A deviation beyond about 1.3e154 has a square that overflows float64 even
    when the mean square does not. Such columns (their sum is not finite) are
    summed again with the deviations scaled by a power of two, which is
    exact, so the result is finite whenever it is representable.
    """
    result = _safe_divide(np.dot(w, np.square(d, out=d)), weight)
    if math.isfinite(np.add.reduce(result)):
        return result
    columns = np.flatnonzero(~np.isfinite(result))
    sub = deviations(columns)
    _, exponent = np.frexp(np.nanmax(np.abs(sub), axis=0, initial=0.0))
    scaled = np.ldexp(sub, -exponent)
    scaled_weight = weight if isinstance(weight, float) else weight[columns]
    mean_square = _safe_divide(np.dot(w, np.square(scaled)), scaled_weight)
    result[columns] = np.ldexp(mean_square, 2 * exponent)
    return result


def sparse_batch_moments(
    X: SparseMatrix, sample_weight: Array | None = None
) -> tuple[Moments, NDArray[np.int64]]:
    """Moments of a scipy.sparse batch at shift 0, in O(nnz) time and memory.

    Implicit zeros are samples of value 0; explicit NaNs are missing values.
    """
    coo = sp.coo_matrix(X)
    coo.sum_duplicates()
    n_samples, n_features = coo.shape
    w = np.ones(n_samples) if sample_weight is None else sample_weight
    data = coo.data.astype(np.float64)
    cols = coo.col
    row_weight = w[coo.row]
    missing = np.isnan(data)
    ok = ~missing
    weight = w.sum() - np.bincount(
        cols[missing], weights=row_weight[missing], minlength=n_features
    )
    count = n_samples - np.bincount(cols[missing], minlength=n_features)
    cols, data, row_weight = cols[ok], data[ok], row_weight[ok]
    total = np.bincount(cols, weights=row_weight * data, minlength=n_features)
    mean = _safe_divide(total, weight)
    dev = data - mean[cols]
    m2_stored = np.bincount(cols, weights=row_weight * dev * dev, minlength=n_features)
    weight_stored = np.bincount(cols, weights=row_weight, minlength=n_features)
    # The implicit zeros each deviate from the mean by -mean.
    m2 = m2_stored + np.maximum(weight - weight_stored, 0.0) * mean * mean
    return Moments(weight, mean, _safe_divide(m2, weight)), count.astype(np.int64)


def merge_moments(old: Moments, new: Moments) -> Moments:
    """Combine the moments of two disjoint sets of samples (same shift).

    Chan, Golub and LeVeque (1983), eq. 1.5 with weights, divided by the
    total weight so that the state holds variances::

        W = W_a + W_b,  f_a = W_a / W,  f_b = W_b / W
        delta = mean_b - mean_a
        mean = mean_a + f_b * delta
        var = var_a + (f_b * (var_b - var_a) + (f_a * delta) * (f_b * delta))

    The increment is summed before it is added to ``var_a``, so a long
    stream of small batches rounds once per batch, as a sum of squares would;
    no term exceeds the result, so nothing overflows while ``var`` fits. A
    side with zero weight contributes nothing.
    """
    weight = old.weight + new.weight
    delta = new.mean - old.mean
    if isinstance(new.weight, float) and new.weight > 0:
        # One positive weight for every feature (a batch without NaN): no
        # feature has W == 0.
        frac_new = new.weight / weight
        frac_old = old.weight / weight
    else:
        frac_new = _safe_divide(new.weight, weight)
        frac_old = _safe_divide(old.weight, weight)
    mean = old.mean + delta * frac_new
    var = old.var + (
        frac_new * (new.var - old.var) + (frac_old * delta) * (frac_new * delta)
    )
    return Moments(weight, mean, var)


def decay_moments(moments: Moments, factor: float) -> Moments:
    """Scale every sample weight by ``factor``: mean and variance are unchanged.

    A weight that underflows to 0 leaves an empty set (zero moments).
    """
    weight = moments.weight * factor
    if np.count_nonzero(weight) == np.size(weight):
        return Moments(weight, moments.mean, moments.var)
    empty = weight == 0
    return Moments(
        weight,
        np.where(empty, 0.0, moments.mean),
        np.where(empty, 0.0, moments.var),
    )


def rebase_moments(moments: Moments, old_shift: Array, new_shift: Array) -> Moments:
    """Express moments taken relative to ``old_shift`` relative to ``new_shift``."""
    mean = np.where(moments.weight > 0, moments.mean + (old_shift - new_shift), 0.0)
    return Moments(moments.weight, mean, moments.var)


def half_life_row_weights(n_rows: int, half_life: float) -> Array:
    """Weights ``2**(-age / half_life)`` of a batch's rows, the last row newest."""
    age = np.arange(n_rows - 1, -1, -1, dtype=np.float64)
    return np.exp2(-age / half_life)


def _safe_divide(num: NDArray | float, den: NDArray | float) -> Array:
    """``num / den`` with 0 where ``den == 0`` (an empty set has zero moments).

    At least one of them is an array, of float64 values (or integers).
    """
    if np.count_nonzero(den) == np.size(den):
        return np.true_divide(num, den)
    out = np.zeros(np.broadcast_shapes(np.shape(num), np.shape(den)))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _anchor(shift: Array, has_data: NDArray, X: NDArray) -> Array:
    """Choose a shift for every feature that has no statistics yet.

    ``has_data`` is nonzero for the features that have statistics.

    The anchor is the feature's first non-NaN value in ``X``: it is within a few
    standard deviations of the mean, and a constant feature gives exact zeros.
    Returns ``shift`` itself when every feature has data.
    """
    if np.count_nonzero(has_data) == has_data.size or X.shape[0] == 0:
        return shift
    columns = np.flatnonzero(has_data == 0)
    values = X[0, columns].astype(np.float64)
    starts_missing = np.isnan(values)
    if starts_missing.any():
        # Only columns whose first value is NaN are searched further.
        later = columns[starts_missing]
        sub = X[:, later]
        present = ~np.isnan(sub)
        first = present.argmax(axis=0)
        found = sub[first, np.arange(later.size)].astype(np.float64)
        found[~present.any(axis=0)] = 0.0
        values[starts_missing] = found
    updated = shift.copy()
    updated[columns] = values
    return updated


# Exact and half-life modes: a running ``Moments`` plus counts.


class StreamState(NamedTuple):
    """Sufficient statistics of a stream, for the exact and half-life modes.

    ``moments`` are relative to ``shift``; ``count`` is the number of non-NaN
    values per feature and ``n_rows`` the number of rows seen (NaN or not),
    which sets the age of samples in half-life mode.
    """

    shift: Array
    moments: Moments
    # A field named like the method tuple.count, which it replaces (checkpoints
    # name it so); mypy takes that for an incompatible override.
    count: NDArray[np.int64]  # type: ignore[assignment]
    n_rows: int


def empty_stream_state(n_features: int) -> StreamState:
    """The state of a stream that has seen nothing."""
    zeros = np.zeros(n_features)
    return StreamState(
        zeros, Moments(zeros, zeros, zeros), np.zeros(n_features, np.int64), 0
    )


def _batch_at(
    shift: Array,
    has_data: NDArray,
    X: NDArray | SparseMatrix,
    sample_weight: Array | None,
    on_nonfinite: Callable[[], None] | None = None,
) -> tuple[Array, Moments, NDArray[np.int64] | int]:
    """Anchor the features without data, then take the batch's moments there.

    ``has_data`` is nonzero for the features that have statistics (a weight
    or a number of updates).

    Sparse batches are summed at shift 0 (shifting would densify them) and
    rebased, which keeps the sparse path exact for data centred near 0.
    """
    if not isinstance(X, np.ndarray) and sp.issparse(X):
        shift = np.where(has_data, shift, 0.0)
        zero = np.zeros_like(shift)
        moments, sparse_count = sparse_batch_moments(X, sample_weight)
        return shift, rebase_moments(moments, zero, shift), sparse_count
    shift = _anchor(shift, has_data, X)
    moments, count = _batch_moments(X, shift, sample_weight, on_nonfinite)
    return shift, moments, count


def _absorb(
    old: StreamState,
    X: NDArray | SparseMatrix,
    sample_weight: Array | None,
    on_nonfinite: Callable[[], None] | None = None,
) -> StreamState:
    """Re-anchor empty features on ``X``, then merge its moments into ``old``."""
    shift, new, count = _batch_at(
        old.shift, state_weight(old.moments), X, sample_weight, on_nonfinite
    )
    old_moments = old.moments
    if shift is not old.shift:
        old_moments = rebase_moments(old_moments, old.shift, shift)
    return StreamState(
        shift,
        merge_moments(old_moments, new),
        old.count + count,
        old.n_rows + X.shape[0],
    )


@_silent
def update_exact(
    old: StreamState,
    X: NDArray | SparseMatrix,
    sample_weight: Array | None = None,
    *,
    on_nonfinite: Callable[[], None] | None = None,
) -> StreamState:
    """Exact streaming mode: the statistics of every sample seen, equally weighted.

    ``on_nonfinite`` is passed to :func:`batch_moments` (dense batches only).
    """
    if sample_weight is None and type(X) is np.ndarray:
        updated = _update_exact_one_block(old, X)
        if updated is not None:
            return updated
    return _absorb(old, X, sample_weight, on_nonfinite)


def _update_exact_one_block(old: StreamState, X: NDArray) -> StreamState | None:
    """``_absorb(old, X, None)`` with fewer steps, for the most common batch.

    That is an unweighted batch of one block, without NaN or infinity, whose
    features all have data (no anchoring). The arithmetic is the same as
    ``_absorb``'s, step for step, with the checks folded into one: a NaN, an
    infinity or an overflow anywhere makes the variance's sum non-finite.
    Returns None for any other batch.
    """
    n_samples, n_features = X.shape
    moments = old.moments
    if (
        n_samples == 0
        or n_samples > block_rows(n_features)
        or np.count_nonzero(moments.weight) != n_features
    ):
        return None
    new = _clean_block_moments(X, old.shift, _ONES[:n_samples], float(n_samples))
    if new is None:
        return None  # _absorb starts again, and calls on_nonfinite
    return StreamState(
        old.shift,
        merge_moments(moments, new),
        old.count + n_samples,
        old.n_rows + n_samples,
    )


def _clean_block_moments(
    X: NDArray, shift: Array, w: Array, weight: float
) -> Moments | None:
    """``_block_moments`` of a block with positive weights and total ``weight``,
    or None if the result is not finite (NaN, infinity or an overflow, which
    ``_block_moments`` handles)."""
    # Into a C-ordered array, so that the sums do not depend on X's layout.
    if X.flags.c_contiguous:
        d = X - shift
    else:
        d = np.subtract(X, shift, out=np.empty(X.shape))
    mean = np.dot(w, d) / weight
    d -= mean
    var = np.dot(w, np.square(d, out=d)) / weight
    if not math.isfinite(np.add.reduce(var)):
        return None
    return Moments(weight, mean, var)


@_silent
def update_half_life(
    old: StreamState,
    X: NDArray | SparseMatrix,
    half_life: float,
    sample_weight: Array | None = None,
    *,
    on_nonfinite: Callable[[], None] | None = None,
) -> StreamState:
    """Half-life mode: a sample of age ``a`` has weight ``2**(-a / half_life)``.

    Ages count rows, the newest row having age 0. The old statistics age by
    the batch's length, ``2**(-n_rows / half_life)``, and the batch's rows get
    their own age weights, so the result does not depend on how the stream is
    cut into batches.
    """
    n_rows = X.shape[0]
    row_weight = half_life_row_weights(n_rows, half_life)
    if sample_weight is not None:
        row_weight = row_weight * sample_weight
    aged = old._replace(
        moments=decay_moments(old.moments, 2.0 ** (-n_rows / half_life))
    )
    return _absorb(aged, X, row_weight, on_nonfinite)


@_silent
def merge_stream_states(
    old: StreamState, new: StreamState, half_life: float | None = None
) -> StreamState:
    """Combine the states of two disjoint parts of a stream.

    With ``half_life`` set, ``new`` is the later part of the stream: ``old``
    ages by ``new.n_rows`` rows before the two are combined.
    """
    old_moments = old.moments
    if half_life is not None:
        old_moments = decay_moments(old_moments, 2.0 ** (-new.n_rows / half_life))
    # Keep old's anchor where it has data, else take new's.
    shift = np.where(old_moments.weight > 0, old.shift, new.shift)
    merged = merge_moments(
        rebase_moments(old_moments, old.shift, shift),
        rebase_moments(new.moments, new.shift, shift),
    )
    return StreamState(shift, merged, old.count + new.count, old.n_rows + new.n_rows)


# Momentum mode: exponential moving averages per batch, as torch.nn.BatchNorm1d.


class EmaState(NamedTuple):
    """Running mean (relative to ``shift``) and variance for the momentum mode.

    ``mean_updates`` and ``var_updates`` count the batches that updated each
    feature; the first one initializes instead of blending.
    """

    shift: Array
    mean: Array
    var: Array
    mean_updates: NDArray[np.int64]
    var_updates: NDArray[np.int64]
    weight: Array
    # As StreamState.count: the field replaces the method tuple.count.
    count: NDArray[np.int64]  # type: ignore[assignment]
    n_rows: int


def empty_ema_state(n_features: int) -> EmaState:
    """The momentum state of a stream that has seen nothing."""
    zeros = np.zeros(n_features)
    izeros = np.zeros(n_features, np.int64)
    return EmaState(zeros, zeros, zeros, izeros, izeros, zeros, izeros, 0)


@_silent
def update_momentum(
    old: EmaState,
    X: NDArray | SparseMatrix,
    momentum: float,
    sample_weight: Array | None = None,
    *,
    on_nonfinite: Callable[[], None] | None = None,
) -> EmaState:
    """Momentum mode, one update per batch::

        mean <- (1 - momentum) * mean + momentum * batch_mean
        var  <- (1 - momentum) * var  + momentum * batch_var

    where ``batch_var = M2 / (W - 1)`` is the unbiased batch variance (``W`` the
    batch's total weight, the number of rows without weights), as in
    ``torch.nn.BatchNorm1d``. A feature's first batch sets the statistics
    instead of blending them. The variance is updated only by batches with
    ``W > 1``, where the unbiased variance is defined.
    """
    if sample_weight is None and type(X) is np.ndarray:
        updated = _update_momentum_one_block(old, X, momentum)
        if updated is not None:
            return updated
    shift, new, count = _batch_at(
        old.shift, old.mean_updates, X, sample_weight, on_nonfinite
    )
    old_mean = np.where(old.mean_updates > 0, old.mean + (old.shift - shift), 0.0)
    has_mean = new.weight > 0
    has_var = new.weight > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        # Bessel's correction: M2 / (W - 1) = var * (W / (W - 1)).
        batch_var = new.var * (new.weight / (new.weight - 1.0))
    mean = np.where(
        old.mean_updates > 0, (1 - momentum) * old_mean + momentum * new.mean, new.mean
    )
    var = np.where(
        old.var_updates > 0, (1 - momentum) * old.var + momentum * batch_var, batch_var
    )
    return EmaState(
        shift,
        np.where(has_mean, mean, old_mean),
        np.where(has_var, np.maximum(var, 0.0), old.var),
        old.mean_updates + has_mean,
        old.var_updates + has_var,
        old.weight + new.weight,
        old.count + count,
        old.n_rows + X.shape[0],
    )


def _update_momentum_one_block(
    old: EmaState, X: NDArray, momentum: float
) -> EmaState | None:
    """``update_momentum`` with fewer steps, for the most common batch.

    That is an unweighted batch of one block and at least two rows, without
    NaN or infinity, whose features all have both statistics: the same
    formulas without the selections. Returns None for any other batch.
    """
    n_samples, n_features = X.shape
    if (
        n_samples < 2
        or n_samples > block_rows(n_features)
        or np.count_nonzero(old.var_updates) != n_features
        or np.count_nonzero(old.mean_updates) != n_features
    ):
        return None
    new = _clean_block_moments(X, old.shift, _ONES[:n_samples], float(n_samples))
    if new is None:
        return None
    batch_var = new.var * (new.weight / (new.weight - 1.0))
    keep = 1 - momentum
    return EmaState(
        old.shift,
        keep * old.mean + momentum * new.mean,
        np.maximum(keep * old.var + momentum * batch_var, 0.0),
        old.mean_updates + 1,
        old.var_updates + 1,
        old.weight + new.weight,
        old.count + n_samples,
        old.n_rows + n_samples,
    )


def overflowed(state: StreamState | EmaState) -> NDArray[np.bool_]:
    """Features whose statistics are no longer finite numbers.

    With finite input that happens only when the spread of a feature is so
    large (beyond about 1e154) that its variance overflows float64.
    """
    if isinstance(state, EmaState):
        bad_mean = (state.mean_updates > 0) & ~np.isfinite(state.shift + state.mean)
        bad_var = (state.var_updates > 0) & ~np.isfinite(state.var)
        return bad_mean | bad_var
    m = state.moments
    finite = np.isfinite(state.shift + m.mean) & np.isfinite(m.var)
    return (m.weight > 0) & ~finite


def state_mean_var(state: StreamState | EmaState) -> tuple[Array, Array]:
    """Mean and variance of the stream; NaN for a feature that has no data yet.

    Biased (weighted population) variance in the exact and half-life modes;
    the running unbiased variance in the momentum mode.
    """
    if isinstance(state, EmaState):
        mean = np.where(state.mean_updates > 0, state.shift + state.mean, np.nan)
        return mean, np.where(state.var_updates > 0, state.var, np.nan)
    m = state.moments
    weight = state_weight(m)
    if np.count_nonzero(weight) == weight.size:
        # Every feature has data; merge_moments never makes var negative.
        return state.shift + m.mean, m.var.copy()
    has_data = weight > 0
    return (
        np.where(has_data, state.shift + m.mean, np.nan),
        np.where(has_data, np.maximum(m.var, 0.0), np.nan),
    )
