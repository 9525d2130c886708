"""Float arithmetic shared by the normalizers' transforms (NumPy only)."""

from __future__ import annotations

import numpy as np

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
) -> np.ndarray:
    """``out = clip((X - center - center_lo) * inv_scale)``, column-wise.

    ``center`` (and for float32 its low part ``center_lo``, see
    :func:`split_float32`) and ``inv_scale`` are in X's dtype or None (that
    step is skipped). ``out`` may be X. Works in blocks of rows that stay in
    cache between the steps.
    """
    n_samples, n_features = X.shape
    rows = block_rows(n_features)
    one_block = n_samples <= rows
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
        if clip is not None:
            np.clip(dst, -clip, clip, out=dst)
    return out
