"""Per-sample statistics: the pure math behind layer and group normalization.

Nothing here knows about scikit-learn. A row of ``n_features`` values is cut
into ``n_groups`` contiguous groups of ``n_features // n_groups`` values; each
group of each row gets its own mean and (biased) variance, computed in float64
in two passes (mean, then squared deviations from it), never as
``E[x**2] - E[x]**2``. NaN marks a missing value: it is left out of the
statistics of its group and stays NaN in the output. A group with no value at
all has NaN statistics, so its output is NaN rather than a made-up number.

Under the numba backend (:mod:`sknorm._config`), dense rows are normalized
by a compiled kernel that takes each group's moments and writes its output in
one pass over the row, with the same float64 arithmetic.

The normalized value of ``x`` in group ``g`` of a row is

.. math:: z = (x - c_g) / s_g

with the center :math:`c_g` (the group's mean, or 0 without centering) and the
scale :math:`s_g = \\sqrt{\\sigma_g^2 + \\epsilon}` (1 without scaling, and 1
where that square root is 0: a constant group with ``eps=0`` is centered, not
divided by zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._config import kernels_for
from ._floats import look_for_infinity, scale_from_var
from ._stats import block_rows
from ._typing import NamespaceArray, SparseMatrix

Array = NDArray[np.float64]

__all__ = [
    "GroupStats",
    "dense_group_moments",
    "sparse_group_moments",
    "normalize_dense_groups",
    "normalize_sparse_groups",
    "invert_dense_groups",
    "invert_sparse_groups",
]


class GroupStats(NamedTuple):
    """What layer or group normalization did to each group of each row.

    Both fields are float64 arrays of shape (n_samples, n_groups):
    ``center`` is the value subtracted from the group (its mean, or 0 when
    ``with_mean=False``) and ``scale`` the value it was then divided by
    (``sqrt(var + eps)``, or 1 when ``with_std=False``). A row is recovered as
    ``x = z * scale + center``. For an array of another library (array API
    dispatch), they are arrays of that library, on X's device.
    """

    center: NamespaceArray
    scale: NamespaceArray


def _group_rows(X: NDArray, n_groups: int) -> Array:
    """A float64 copy of X, viewed as (n_samples, n_groups, group_size)."""
    n_samples, n_features = X.shape
    return np.array(X, dtype=np.float64).reshape(
        n_samples, n_groups, n_features // n_groups
    )


def dense_group_moments(
    X: NDArray, n_groups: int
) -> tuple[Array, Array, Array, NDArray[np.bool_] | None]:
    """Mean and biased variance of each group of each row, NaN-aware.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        ``n_features`` must be a multiple of ``n_groups``.
    n_groups : int
        Number of contiguous groups per row.

    Returns
    -------
    mean, var : ndarray of shape (n_samples, n_groups)
        NaN for a group without any non-NaN value.
    deviation : ndarray of shape (n_samples, n_groups, group_size)
        ``x - mean`` in float64, 0 where x is NaN.
    missing : ndarray of bool, same shape as ``deviation``, or None
        Where X is NaN; None when nothing is.
    """
    d = _group_rows(X, n_groups)
    missing: NDArray[np.bool_] | None = None
    count: NDArray[np.intp] | int = d.shape[2]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = _group_sums(d)
        # A NaN makes its group's total NaN: only then is X searched for one.
        if not math.isfinite(np.add.reduce(total, axis=None)):
            nan = np.isnan(d)
            if nan.any():
                d[nan] = 0.0
                count = d.shape[2] - nan.sum(axis=2)
                missing = nan
                total = _group_sums(d)
        mean = total / count
        d -= mean[..., np.newaxis]
        if missing is not None:
            d[missing] = 0.0
        var = _group_sums(d * d) / count
    return mean, var, d, missing


def _group_sums(grouped: Array) -> Array:
    """Sums over the last axis of a C-ordered 3-D array, as a product with
    ones (one BLAS call): much faster than a reduction along a short axis."""
    n_samples, n_groups, size = grouped.shape
    sums = grouped.reshape(n_samples * n_groups, size) @ np.ones(size)
    return sums.reshape(n_samples, n_groups)


def sparse_group_moments(
    X: SparseMatrix, n_groups: int
) -> tuple[Array, Array, NDArray[np.intp]]:
    """Mean and biased variance of each group of each row of a CSR matrix.

    Implicit zeros are values; stored NaNs are missing. The squared
    deviations of the stored values are summed, and each implicit zero adds
    ``mean**2``.

    Parameters
    ----------
    X : scipy.sparse CSR matrix of shape (n_samples, n_features)
        Canonical (no duplicate entries); ``n_features`` a multiple of
        ``n_groups``.
    n_groups : int
        Number of contiguous groups per row.

    Returns
    -------
    mean, var : ndarray of shape (n_samples, n_groups)
        NaN for a group without any non-NaN value.
    group_of_entry : ndarray of shape (nnz,)
        Flat index ``row * n_groups + group`` of every stored entry.
    """
    n_samples, n_features = X.shape
    group_size = n_features // n_groups
    n_cells = n_samples * n_groups
    rows = np.repeat(np.arange(n_samples), np.diff(X.indptr))
    group_of_entry = rows * n_groups + X.indices // group_size
    data = X.data.astype(np.float64)
    missing = np.isnan(data)
    values = np.where(missing, 0.0, data)
    stored = np.bincount(group_of_entry, minlength=n_cells)
    count = group_size - np.bincount(group_of_entry, missing, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(group_of_entry, values, minlength=n_cells) / count
        deviation = np.where(missing, 0.0, data - mean[group_of_entry])
        m2 = np.bincount(group_of_entry, deviation * deviation, minlength=n_cells)
        m2 += (group_size - stored) * mean * mean
        var = m2 / count
    shape = (n_samples, n_groups)
    return mean.reshape(shape), var.reshape(shape), group_of_entry


def normalize_dense_groups(
    X: NDArray,
    n_groups: int,
    eps: float,
    with_mean: bool,
    with_std: bool,
    *,
    out: NDArray | None = None,
    on_infinity: Callable[[], None] | None = None,
) -> tuple[NDArray, GroupStats]:
    """Center and scale each group of each row of a dense array.

    Returns the result, shape (n_samples, n_features), NaN where X is NaN,
    computed in float64 and returned in X's dtype if that is float32 (else in
    float64), and the statistics that were applied. ``out``, if given, is a
    new array of that shape and dtype to write the result into.
    ``on_infinity``, if given, is called when X holds +/-inf (it may raise):
    the statistics find an infinity without a separate pass over X. Rows
    are processed in blocks that stay in cache.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 3.0, 10.0, 30.0]], dtype=np.float32)
    >>> Z, stats = normalize_dense_groups(X, 2, 0.0, True, True)
    >>> Z.dtype, Z.tolist(), stats.center.tolist(), stats.scale.tolist()
    (dtype('float32'), [[-1.0, 1.0, -1.0, 1.0]], [[2.0, 20.0]], [[1.0, 10.0]])
    """
    n_samples, n_features = X.shape
    shape = (n_samples, n_groups)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    if out is None:
        out = np.empty(X.shape, dtype=dtype)
    if not (with_mean or with_std):
        if on_infinity is not None:
            look_for_infinity(X, on_infinity)
        out[...] = X
        return out, GroupStats(np.zeros(shape), np.ones(shape))
    kernels = kernels_for(X)
    if kernels is not None:
        center, scale = kernels.normalize_dense_groups(
            X, n_groups, eps, with_mean, with_std, out, on_infinity
        )
        return out, GroupStats(center, scale)
    stats = GroupStats(np.empty(shape), np.empty(shape))
    rows = block_rows(n_features)
    for start in range(0, n_samples, rows):
        block = slice(start, start + rows)
        _normalize_group_block(
            X[block],
            n_groups,
            eps,
            with_mean,
            with_std,
            out[block],
            GroupStats(stats.center[block], stats.scale[block]),
            on_infinity,
        )
    return out, stats


def _normalize_group_block(
    X: NDArray,
    n_groups: int,
    eps: float,
    with_mean: bool,
    with_std: bool,
    out: NDArray,
    stats: GroupStats,
    on_infinity: Callable[[], None] | None,
) -> None:
    """:func:`normalize_dense_groups` of a block of rows, written to ``out``
    and ``stats``."""
    n_samples, n_features = X.shape
    mean, var, deviation, missing = dense_group_moments(X, n_groups)
    if on_infinity is not None and not math.isfinite(np.add.reduce(var, axis=None)):
        # An infinity makes its group's variance NaN (so does a NaN).
        if np.isinf(X).any():
            on_infinity()
    if with_mean:
        z = deviation
        stats.center[...] = mean
    else:
        z = _group_rows(X, n_groups)
        stats.center[...] = 0.0
    if missing is not None:
        z[missing] = np.nan
    grouped_out = out.reshape(z.shape)
    if with_std:
        scale = scale_from_var(var, eps)
        # Multiplying by the reciprocal is much faster than dividing, and
        # within one rounding of it; the product goes to out in its dtype.
        np.multiply(z, (1.0 / scale)[..., np.newaxis], out=grouped_out)
        stats.scale[...] = scale
    else:
        grouped_out[...] = z
        stats.scale[...] = 1.0


def normalize_sparse_groups(
    X: SparseMatrix, n_groups: int, eps: float, with_std: bool
) -> tuple[SparseMatrix, GroupStats]:
    """Scale (never center) each group of each row of a CSR matrix.

    Returns a new float64 CSR matrix with the sparsity pattern of X, and the
    statistics that were applied (center 0).
    """
    shape = (X.shape[0], n_groups)
    X = X.astype(np.float64, copy=True)
    X.sum_duplicates()
    if not with_std:
        return X, GroupStats(np.zeros(shape), np.ones(shape))
    _, var, group_of_entry = sparse_group_moments(X, n_groups)
    scale = scale_from_var(var, eps)
    X.data /= scale.ravel()[group_of_entry]
    return X, GroupStats(np.zeros(shape), scale)


def invert_dense_groups(Z: NDArray, stats: GroupStats) -> Array:
    """``z * scale + center`` for each group of each row, in float64."""
    n_samples, n_features = Z.shape
    x = _group_rows(Z, stats.center.shape[1])
    x *= stats.scale[..., np.newaxis]
    x += stats.center[..., np.newaxis]
    return x.reshape(n_samples, n_features)


def invert_sparse_groups(Z: SparseMatrix, stats: GroupStats) -> SparseMatrix:
    """``z * scale`` for each group of each row of a CSR matrix (center is 0)."""
    n_groups = stats.scale.shape[1]
    X = Z.astype(np.float64, copy=True)
    X.sum_duplicates()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    group_of_entry = rows * n_groups + X.indices // (X.shape[1] // n_groups)
    X.data *= stats.scale.ravel()[group_of_entry]
    return X
