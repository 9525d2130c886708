"""Float arithmetic shared by the normalizers' transforms.

The NumPy code here is the reference; under the numba backend (see
:mod:`sknorm._config`) :func:`normalize_columns` and
:func:`denormalize_columns` run a compiled kernel that does all the steps in
one pass over the data, with the same arithmetic in the data's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._config import kernels_for
from ._stats import block_rows


def scale_from_var(var: np.ndarray, eps: float) -> np.ndarray:
    """``sqrt(var + eps)``, with 1.0 where that is 0 (a constant feature or group)."""
    scale = np.sqrt(var + eps) if eps else np.sqrt(var)
    if np.count_nonzero(scale) != scale.size:
        scale[scale == 0.0] = 1.0
    return scale


def split_float32(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split float64 values into float32 ``hi + lo`` that sum to them closely.

    Subtracting ``hi`` then ``lo`` from float32 data keeps the result accurate
    to float32 precision even when the mean is large (1e6 + N(0, 1)), where
    subtracting the rounded float32 mean alone would be off by up to half a
    float32 spacing of the mean.
    """
    hi = values.astype(np.float32)
    lo = (values - hi).astype(np.float32)
    return hi, lo


def subtract_in_place(X: np.ndarray, center: np.ndarray) -> None:
    """``X -= center`` in place, to float32 precision for float32 X."""
    if X.dtype == np.float32:
        hi, lo = split_float32(center)
        X -= hi
        X -= lo
    else:
        X -= center


def normalize_columns(
    X: np.ndarray,
    out: np.ndarray,
    center: np.ndarray | None,
    center_lo: np.ndarray | None,
    inv_scale: np.ndarray | None,
    clip: float | None,
    *,
    on_infinity: Callable[[], None] | None = None,
) -> np.ndarray:
    """``out = clip((X - center - center_lo) * inv_scale)``, column-wise.

    ``center`` (and for float32 its low part ``center_lo``, see
    :func:`split_float32`) and ``inv_scale`` are in X's dtype or None (that
    step is skipped). ``out`` may be X. Works in blocks of rows that stay in
    cache between the steps.

    ``on_infinity``, if given, is called when X holds +/-inf (it may raise),
    after ``out`` is written: a caller that writes into a new array can leave
    the check of X to this pass, which the compiled kernel makes for free (the
    NumPy path checks X first).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> out = normalize_columns(X, np.empty_like(X), np.array([2.0, 20.0]),
    ...                         None, np.array([1.0, 0.1]), clip=0.5)
    >>> out.tolist()
    [[-0.5, -0.5], [0.5, 0.5]]
    """
    kernels = kernels_for(X)
    if kernels is not None:
        return kernels.normalize_columns(
            X, out, center, center_lo, inv_scale, clip, on_infinity
        )
    n_samples, n_features = X.shape
    rows = block_rows(n_features)
    one_block = n_samples <= rows
    if on_infinity is not None and (one_block or out is X):
        # X is checked first: a single block is as cheap to check as its
        # output, and in place X is gone afterwards.
        look_for_infinity(X, on_infinity)
        on_infinity = None
    # Otherwise each block's output is summed while it is in cache: an
    # infinity in X makes that sum non-finite (so may a NaN or an overflow,
    # after which X itself is checked).
    suspect = False
    for start in (0,) if one_block else range(0, n_samples, rows):
        if one_block:
            src, dst = X, out
        else:
            src, dst = X[start : start + rows], out[start : start + rows]
        if center is not None:
            np.subtract(src, center, out=dst)
            if center_lo is not None:
                np.subtract(dst, center_lo, out=dst)
            src = dst
        if inv_scale is not None:
            np.multiply(src, inv_scale, out=dst)
            src = dst
        if src is not dst:
            dst[...] = src
        if on_infinity is not None and not suspect:
            # Before clipping, which would make an infinity finite.
            suspect = not _sums_are_finite(dst)
        if clip is not None:
            np.clip(dst, -clip, clip, out=dst)
    if suspect and on_infinity is not None:
        look_for_infinity(X, on_infinity)
    return out


# Column sums as ``ones @ block`` (BLAS), in the block's dtype: faster than
# np.add.reduce on a block in cache.
_UNITS = {
    np.dtype(dtype): np.ones(block_rows(1), dtype=dtype)
    for dtype in (np.float64, np.float32)
}
for _units in _UNITS.values():
    _units.setflags(write=False)


def _sums_are_finite(block: np.ndarray) -> bool:
    """Whether the sum of a block of at most ``block_rows`` rows is finite
    (false if it holds a NaN or an infinity, or if the sum overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        units = _UNITS[block.dtype][: block.shape[0]]
        return math.isfinite(np.add.reduce(units @ block))


def look_for_infinity(X: np.ndarray, on_infinity: Callable[[], None]) -> None:
    """Call ``on_infinity`` if X holds +/-inf (one reduction if it does not)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not math.isfinite(np.add.reduce(X, axis=None)) and np.isinf(X).any():
            on_infinity()


class ColumnTransform:
    """:func:`normalize_columns` with its constants fixed, for data of one dtype.

    ``center``, ``center_lo`` and ``inv_scale`` are in that dtype (or None),
    ``clip`` a float or None. Calling it on ``(X, out)`` transforms as
    ``normalize_columns`` does; the compiled kernel's arguments are prepared
    on the first call that uses it and kept, which on small batches is a
    good part of a transform's cost. Make a new one when a constant changes.
    """

    __slots__ = ("center", "center_lo", "inv_scale", "clip", "_kernel_arguments")

    def __init__(
        self,
        center: np.ndarray | None,
        center_lo: np.ndarray | None,
        inv_scale: np.ndarray | None,
        clip: float | None,
    ) -> None:
        self.center = center
        self.center_lo = center_lo
        self.inv_scale = inv_scale
        self.clip = clip
        self._kernel_arguments: tuple | None = None

    def __call__(
        self,
        X: np.ndarray,
        out: np.ndarray,
        on_infinity: Callable[[], None] | None = None,
    ) -> np.ndarray:
        kernels = kernels_for(X)
        if kernels is None:
            return normalize_columns(
                X,
                out,
                self.center,
                self.center_lo,
                self.inv_scale,
                self.clip,
                on_infinity=on_infinity,
            )
        arguments = self._kernel_arguments
        if arguments is None:
            arguments = self._kernel_arguments = kernels.column_arguments(
                self.center, self.center_lo, self.inv_scale, self.clip, X.dtype
            )
        return kernels.transform_columns(X, out, arguments, on_infinity)


def column_transform(
    center: np.ndarray | None,
    scale: np.ndarray | None,
    dtype: np.dtype,
    clip: float | None = None,
) -> ColumnTransform:
    """The :class:`ColumnTransform` of ``clip((x - center) / scale)`` for data
    of ``dtype``, from float64 ``center`` and ``scale`` (None skips a step).

    ``1 / scale`` is multiplied rather than ``scale`` divided (faster, within
    one rounding); for float32 the center is subtracted in two parts (see
    :func:`split_float32`).
    """
    if center is None:
        center_hi = center_lo = None
    elif dtype == np.float32:
        center_hi, center_lo = split_float32(center)
    else:
        center_hi, center_lo = center, None
    inv_scale = None if scale is None else (1.0 / scale).astype(dtype)
    return ColumnTransform(center_hi, center_lo, inv_scale, clip)


def denormalize_columns(
    X: np.ndarray,
    out: np.ndarray,
    scale: np.ndarray | None,
    center: np.ndarray | None,
) -> np.ndarray:
    """``out = X * scale + center``, column-wise: the inverse of a normalization.

    ``scale`` and ``center`` are float64 or None (that step is skipped). For
    float32 X the center is added in two float32 parts (see
    :func:`split_float32`), so that large centers keep float32 precision.
    ``out`` may be X.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[-1.0, 1.0]], dtype=np.float32)
    >>> denormalize_columns(Z, Z.copy(), np.array([2.0, 2.0]),
    ...                     np.array([1e6, 1e6])).tolist()
    [[999998.0, 1000002.0]]
    """
    kernels = kernels_for(X)
    factor = None if scale is None else scale.astype(X.dtype)
    if center is None:
        center_hi = center_lo = None
    elif X.dtype == np.float32:
        center_hi, center_lo = split_float32(center)
    else:
        center_hi, center_lo = center, None
    if kernels is not None:
        return kernels.denormalize_columns(X, out, factor, center_hi, center_lo)
    if out is not X:
        out[...] = X
    if factor is not None:
        out *= factor
    if center_hi is not None:
        out += center_hi
        if center_lo is not None:
            out += center_lo
    return out
