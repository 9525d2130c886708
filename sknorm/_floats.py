"""Float arithmetic shared by the normalizers' transforms (NumPy only)."""

from __future__ import annotations

import numpy as np


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
