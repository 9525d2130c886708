"""Input checks shared by the sknorm estimators.

They complete scikit-learn's ``validate_data`` with messages that say what was
wrong and what to do about it.
"""

from __future__ import annotations

import math
import numbers
from typing import overload

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn import get_config
from sklearn.utils import assert_all_finite

# The dtypes the normalizers compute in; anything else is converted to float64.
FLOAT_DTYPES = (np.float64, np.float32)
_NATIVE_FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def is_plain_batch(estimator, X) -> bool:
    """True if ``validate_data(estimator, X, reset=False)`` would pass X unchanged.

    That is a non-empty 2-D float64/float32 ndarray of native byte order with
    as many columns as the fitted estimator saw, which was not fitted with
    feature names (an ndarray would then warn). Such a batch can skip
    ``validate_data``, whose overhead dominates calls on small batches; every
    other input goes through it.
    """
    attrs = estimator.__dict__
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype in _NATIVE_FLOAT_DTYPES
        and X.shape[0] > 0
        and X.shape[1] == attrs.get("n_features_in_")
        and "feature_names_in_" not in attrs
    )


def plain_array(estimator, X) -> np.ndarray | None:
    """X as an array that may skip ``validate_data``, or None.

    A plain batch (see :func:`is_plain_batch`) is returned as it is. A pandas
    or polars DataFrame is returned as its NumPy array when the estimator was
    fitted with feature names and X has exactly those columns, in order, all
    of them float32/float64: what ``validate_data`` would check, and the
    array it would make, found with one comparison of the column names. So a
    stream of DataFrame chunks costs about what a stream of arrays does.
    Anything else (other dtypes, sparse or nullable columns, other names)
    gives None and goes through ``validate_data``.
    """
    if type(X) is np.ndarray:
        return X if is_plain_batch(estimator, X) else None
    attrs = estimator.__dict__
    names = attrs.get("feature_names_in_")
    kind = type(X)
    if names is None or kind.__name__ != "DataFrame":
        return None
    library = kind.__module__.split(".")[0]
    if library == "pandas":
        memo = attrs.get("_names_index")
        if memo is None or memo[0] is not names:
            # Index.equals on a kept Index is the cheapest exact comparison.
            memo = attrs["_names_index"] = (names, type(X.columns)(names))
        if not X.columns.equals(memo[1]):
            return None
    elif library != "polars" or X.columns != names.tolist():
        return None
    if not X.shape[0]:
        return None
    array = X.to_numpy() if library == "pandas" else X.to_numpy(order="c")
    if array.ndim != 2 or array.dtype not in _NATIVE_FLOAT_DTYPES:
        return None
    # Sparse (and other extension) float columns also give a float array,
    # but validate_data keeps an all-sparse frame sparse. Two conversions
    # that share memory are views of one NumPy block: no extension column.
    if (
        library == "pandas"
        and not np.may_share_memory(array, X.to_numpy())
        and not all(isinstance(dtype, np.dtype) for dtype in set(X.dtypes))
    ):
        return None
    return array


def format_indices(indices, limit: int = 10) -> str:
    """``"0, 3, 7"``, cut to ``limit`` entries with ``" ..."`` after them."""
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (" ..." if len(indices) > limit else "")


@overload
def check_sample_weight(sample_weight: None, n_samples: int) -> None: ...


@overload
def check_sample_weight(sample_weight: object, n_samples: int) -> np.ndarray: ...


def check_sample_weight(sample_weight: object, n_samples: int) -> np.ndarray | None:
    """Return ``sample_weight`` as a float64 array of shape (n_samples,), or None.

    Raises
    ------
    TypeError
        If the weights are not numbers.
    ValueError
        If the weights have the wrong shape, are negative, NaN or infinite.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        # numbers.Number declares no __float__; float() of a complex number
        # raises the TypeError it should.
        return np.full(n_samples, float(sample_weight))  # type: ignore[arg-type]
    try:
        w = np.asarray(sample_weight)
    except Exception as exc:  # e.g. ragged lists
        raise TypeError(
            f"sample_weight must be a 1-D array of numbers; could not convert it: {exc}"
        ) from exc
    if w.dtype.kind not in "biuf":
        raise TypeError(
            f"sample_weight must contain real numbers, got dtype {w.dtype}; "
            "convert it with np.asarray(sample_weight, dtype=float)."
        )
    w = w.astype(np.float64, copy=False)
    if w.ndim != 1:
        raise ValueError(
            f"sample_weight must be 1-D of shape ({n_samples},), "
            f"got shape {w.shape}; pass one weight per row of X."
        )
    if w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight has {w.shape[0]} values but X has {n_samples} rows; "
            "pass one weight per row of X."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(
            "sample_weight contains NaN or infinity; weights must be finite "
            "(use 0 to ignore a row)."
        )
    if np.any(w < 0):
        raise ValueError(
            "sample_weight contains negative values; weights must be >= 0 "
            "(use 0 to ignore a row)."
        )
    return w


def all_zero_weights_error() -> ValueError:
    """The error for a fit whose sample weights are all zero."""
    return ValueError(
        "All sample weights are zero: fit has nothing to learn from. Give at "
        "least one sample a positive weight."
    )


def check_no_infinity(X) -> None:
    """Raise a ValueError naming the features of ``X`` that hold +/-inf.

    NaN is allowed (it marks a missing value). Skipped under
    ``sklearn.set_config(assume_finite=True)``.
    """
    if get_config()["assume_finite"]:
        return
    data = X if type(X) is np.ndarray else X.data if sp.issparse(X) else X
    # One reduction answers for the common all-finite case.
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(np.add.reduce(data, axis=None)):
            return
    bad = np.isinf(data)
    if not bad.any():
        return
    if sp.issparse(X):
        coo = X.tocoo()
        columns = np.unique(coo.col[np.isinf(coo.data)])
        raise infinity_error(np.isin(np.arange(X.shape[1]), columns))
    raise infinity_error(bad.any(axis=0))


def infinity_error(infinite_columns: ArrayLike) -> ValueError:
    """The error for infinity in X, given which features hold one."""
    columns = np.flatnonzero(infinite_columns)
    return ValueError(
        f"Input X contains infinity in feature(s) {format_indices(columns)}. "
        "NaN marks a missing "
        "value and is ignored, but infinite values cannot be normalized: replace "
        "them with NaN or a finite value (e.g. np.nan_to_num or np.clip) first."
    )


def check_infinity_allow_nan(X: np.ndarray, estimator_name: str) -> None:
    """Raise scikit-learn's own error if the float ndarray X holds +/-inf.

    The check that ``validate_data(..., ensure_all_finite="allow-nan")`` makes,
    with its message and its ``assume_finite`` switch, for inputs that skip
    ``validate_data`` because it would pass them through unchanged.
    """
    assert_all_finite(X, allow_nan=True, estimator_name=estimator_name, input_name="X")


def is_dask_collection(X) -> bool:
    """True for a dask array or DataFrame, found without importing dask."""
    return type(X).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(
        X, "__dask_graph__"
    )
